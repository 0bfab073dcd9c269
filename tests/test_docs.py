"""The README and docs/*.md name files, modules and their symbols: every one they name exists, so that a move in the
code cannot leave the docs pointing at nothing."""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

from conftest import REPO, ablation_groups

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SUFFIXES = (".py", ".yaml", ".md", ".sh", ".sbatch", ".toml", ".png")
OURS = {
    "src",
    "conf",
    "tests",
    "bench",
    "docs",
    "examples",
    "tools",
    "alexnet_lab",
    ".ci",
}  # other codebases' files: not


def quoted(doc: Path) -> list[str]:
    """The text of every `code span` of ``doc`` (fenced blocks left out: they are commands and code)."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)#]+)\)", text)


def path_of(name: str) -> Path | None:
    """Where a named file lies: from the repository's root, or a package path under src/."""
    for base in (REPO, REPO / "src", REPO / "docs"):
        if (base / name).exists():
            return base / name
    return None


def references(doc: Path) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """(files and folders, (file, symbol) pairs written `file.py: SYMBOL`, `module.symbol` names) in ``doc``."""
    files, in_files, symbols = set(), set(), set()
    for span in quoted(doc):
        for part in re.split(r"[\s,]+", span):
            part = part.strip("().;")
            if "<" in part or "*" in part or "=" in part or part.startswith(("http", "-")):
                continue
            ours = part.split("/")[0] in OURS or part in ("README.md", "pyproject.toml")
            if ours and (part.endswith(SUFFIXES) or part.endswith("/")):
                files.add(part)
            elif re.fullmatch(r"alexnet_lab(\.\w+)+", part):
                symbols.add(part)
        found = re.fullmatch(r"([\w/.-]+\.py): (\w+)(?:.*)", span)
        if found:
            in_files.add((found[1], found[2]))
    return files, in_files, symbols


def missing_symbol(name: str) -> bool:
    """Whether the dotted ``name`` (a module, then attributes) names nothing."""
    module, rest = name, []
    while module:
        try:
            found = importlib.import_module(module)
            break
        except ModuleNotFoundError:
            module, _, last = module.rpartition(".")
            rest.insert(0, last)
    else:
        return True
    for attribute in rest:
        if not hasattr(found, attribute):
            return True
        found = getattr(found, attribute)
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_file_and_symbol_the_docs_name_exists(doc: Path) -> None:
    files, in_files, symbols = references(doc)
    assert files or symbols, f"{doc.name} names no file or symbol: the parser is broken"
    missing = [name for name in sorted(files) if path_of(name) is None]
    for name, symbol in sorted(in_files):
        path = path_of(name) or path_of(f"alexnet_lab/{name}")
        if path is None or not re.search(rf"\b{symbol}\b", path.read_text()):
            missing.append(f"{name}: {symbol}")
    missing += [name for name in sorted(symbols) if missing_symbol(name)]
    assert not missing, f"{doc.name} names what does not exist: {missing}"


CODE = sorted(p for folder in ("src", "bench", "tests", "tools") for p in (REPO / folder).rglob("*.py"))


def prose(source: str) -> str:
    """The docstrings and comments of a Python ``source``."""
    tree = ast.parse(source)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    docstrings = [ast.get_docstring(node) or "" for node in nodes]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return "\n".join(docstrings + [token.string for token in tokens if token.type == tokenize.COMMENT])


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_and_symbol_named_in_docstrings_and_comments_exists(path: Path) -> None:
    text = prose(path.read_text())
    files = re.findall(
        r"(?<![\w/.])((?:src|conf|tests|bench|docs|tools|alexnet_lab)/[\w/.-]*\w\.(?:py|yaml|md|sh))", text
    )
    symbols = [m[0] for m in re.finditer(r"(?<![\w.])alexnet_lab(\.\w+)+", text)]
    missing = [name for name in files if path_of(name) is None] + [s for s in symbols if missing_symbol(s)]
    assert not missing, f"{path.relative_to(REPO)} names what does not exist: {missing}"


def test_the_docstring_reader_finds_names_in_docstrings_and_comments() -> None:
    source = 'def f():\n    """See alexnet_lab.nothing_here."""\n    return 1  # conf/none.yaml\n'
    assert "alexnet_lab.nothing_here" in prose(source) and "conf/none.yaml" in prose(source)
    assert missing_symbol("alexnet_lab.nothing_here") and not missing_symbol("alexnet_lab.errors.UserError")


def test_the_readmes_table_of_groups_lists_each_groups_choices() -> None:
    """The ablation groups' options are the choices of AlexNet's annotations: the README's table says the same."""
    import typing

    from alexnet_lab.models.alexnet import AlexNet

    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", (REPO / "README.md").read_text(), re.M)}
    for group in ablation_groups():
        assert group in rows, f"the README's table has no row for the group {group}"
        listed = re.findall(r"`(\w+)`", rows[group])
        annotation = typing.get_type_hints(AlexNet.__init__, include_extras=True)[group]
        assert listed == list(typing.get_args(annotation)), (group, listed)
