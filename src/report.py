"""Rebuild a sweep's report: python src/report.py outputs/train/multiruns/<date_time>"""

import sys

from alexnet_lab.errors import UserError, user_errors
from alexnet_lab.report import check_sweep_dir, write_report

if __name__ == "__main__":
    with user_errors():
        if len(sys.argv) != 2:
            raise UserError("give one folder: python src/report.py outputs/train/multiruns/<date_time>")
        for path in write_report(check_sweep_dir(sys.argv[1])):
            print(path)
