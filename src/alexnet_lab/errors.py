"""Mistakes a user can fix. The entry points print such an error's message on one line and exit with
status 2 instead of showing a traceback."""


class UserError(Exception):
    """An error whose message names the cause and the fix."""
