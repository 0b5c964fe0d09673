"""Compare the runs of a sweep: report.md, report.csv and report.png, with the paper's figures alongside.

It reads only run directories (their metrics.json), so it works on partial sweeps and on runs copied from a
cluster; failed runs are listed with their error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.analysis.report import check_sweep_dir, log_report_to_wandb, write_report
from src.metrics.significance import RESAMPLES
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.report outputs/sweeps/rothe_grid_demo
python -m src.report outputs/sweeps/rothe_grid-cnn_dailymail --out reports/cnn --baseline rnd2rnd"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("report", __doc__, USAGE)
    p.add_argument("sweep_dir", help="a sweep directory, e.g. outputs/sweeps/rothe_grid_demo")
    p.add_argument("--out", help="where to write the report (default: the sweep directory)")
    p.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="also log the table to W&B: auto = only when online (default)",
    )
    p.add_argument("--baseline", help="the variant every other row is compared with (default: the first row)")
    p.add_argument(
        "--resamples", type=int, default=RESAMPLES, help="paired-bootstrap resamples (default 1000)"
    )
    p.add_argument(
        "--tolerance", type=float, help="flag a gap to the paper's figure above this many points (1.0)"
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    """The command line's paths and numbers, before any run is read."""
    check_sweep_dir(Path(args.sweep_dir))
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a directory. Fix: --out a directory.")
    if args.resamples < 1:
        raise UserError(
            f"--resamples {args.resamples} is not a number of resamples. Fix: e.g. --resamples 1000."
        )
    if args.tolerance is not None and args.tolerance < 0:
        raise UserError(
            f"--tolerance {args.tolerance} is negative. Fix: a gap in points, e.g. --tolerance 1.0."
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        check_args(args)
        result = write_report(args.sweep_dir, args.out, args.baseline, args.resamples, args.tolerance)
        if log_report_to_wandb(result, Path(args.sweep_dir), args.wandb):
            print(f"report logged to W&B ({args.wandb}) in group {Path(args.sweep_dir).name}")
    print(Path(result["files"][0]).read_text())
    print(f"{result['runs']} runs ({result['failed']} not completed); written: {', '.join(result['files'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
