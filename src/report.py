"""Rebuild a sweep's report: python src/report.py outputs/train/multiruns/<date_time>"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alexnet_lab.errors import UserError  # noqa: E402
from alexnet_lab.report import check_sweep_dir, write_report  # noqa: E402

if __name__ == "__main__":
    try:
        if len(sys.argv) != 2:
            raise UserError("give one folder: python src/report.py outputs/train/multiruns/<date_time>")
        for path in write_report(check_sweep_dir(sys.argv[1])):
            print(path)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
