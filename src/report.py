"""Rebuild a sweep's report: python src/report.py outputs/train/multiruns/<date_time>"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alexnet_lab.report import write_report  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python src/report.py SWEEP_DIR  (a folder of a -m run, e.g. outputs/train/multiruns/...)")
    for path in write_report(sys.argv[1]):
        print(path)
