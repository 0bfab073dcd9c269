"""Rebuild a sweep's report (report.md, report.png): python src/report.py outputs/train/multiruns/<date_time>"""

import argparse

from alexnet_lab.errors import user_errors
from alexnet_lab.report import check_sweep_dir, write_report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", help="the folder of a -m run, e.g. outputs/train/multiruns/<date_time>")
    args = parser.parse_args()
    with user_errors():
        for path in write_report(check_sweep_dir(args.sweep_dir)):
            print(path)
