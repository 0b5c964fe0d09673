"""Average checkpoints: the mean of a run's last N kept validation checkpoints, or of checkpoints of one run, as one
checkpoint that src.eval, src.export and src.predict take (fairseq's average_checkpoints).

A run keeps the checkpoints of its last validations with `average.last=N` (checkpoints/step-<step>.ckpt, the trained
weights) and writes their mean to checkpoints/average.ckpt itself; this command averages fewer of them, or any
checkpoints given. The written checkpoint names the steps it averages (its `averaged` entry); src.eval's metrics.json
then says `weights: {kind: average, checkpoints: N, steps: [...]}`. An existing file is never replaced without
--force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.run.average import average, kept
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.average outputs/runs/<run> --last 3                  # writes <run>/checkpoints/average-3.ckpt
python -m src.average A.ckpt B.ckpt C.ckpt --out average.ckpt      # checkpoints of one run, oldest first
python -m src.eval ckpt_path=outputs/runs/<run>/checkpoints/average-3.ckpt   # then evaluate (or export, predict)"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("average", __doc__, USAGE)
    p.add_argument(
        "inputs", nargs="+", type=Path, help="a run directory of src.train, or .ckpt files of one run"
    )
    p.add_argument("--last", type=int, help="a run directory: its newest N kept checkpoints (default: all)")
    p.add_argument(
        "--out", type=Path, help="the checkpoint to write (a run: checkpoints/average-N.ckpt there)"
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p


def chosen(inputs: list[Path], last: int | None) -> tuple[list[Path], Path | None]:
    """(the checkpoints to average, oldest first; the run's checkpoint directory or None)."""
    if last is not None and last < 1:
        raise UserError(f"--last {last} averages nothing. Fix: --last 3 (a positive number).")
    if len(inputs) == 1 and inputs[0].is_dir():
        here = inputs[0] / "checkpoints" if (inputs[0] / "checkpoints").is_dir() else inputs[0]
        steps = kept(here)
        if not steps:
            raise UserError(
                f"{inputs[0]} kept no validation checkpoints to average (checkpoints/step-*.ckpt). Fix: train it "
                "with average.last=N, or give .ckpt files."
            )
        if last is not None and last > len(steps):
            raise UserError(
                f"{inputs[0]} kept {len(steps)} validation checkpoints (steps "
                f"{', '.join(str(s) for s, _ in steps)}), fewer than --last {last}. Fix: --last {len(steps)}."
            )
        return [p for _, p in steps][-(last or len(steps)) :], here
    if last is not None:
        raise UserError(
            "--last picks among a run's kept checkpoints. Fix: give the run directory, or drop --last."
        )
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        raise UserError(
            f"{', '.join(missing)}: no such checkpoint file. Fix: give .ckpt files, or one run directory."
        )
    return list(inputs), None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        paths, run_checkpoints = chosen([p.expanduser() for p in args.inputs], args.last)
        out = args.out
        if out is None:
            if run_checkpoints is None:
                raise UserError("where to write the average? Fix: --out average.ckpt")
            out = run_checkpoints / f"average-{len(paths)}.ckpt"
        out = out.expanduser()
        if out.is_dir():
            raise UserError(f"--out {out} is a directory. Fix: --out {out / 'average.ckpt'}")
        if out.exists() and not args.force:
            raise UserError(f"{out} exists. Fix: another --out, or --force to replace it.")
        if not out.parent.is_dir():
            raise UserError(f"{out.parent} does not exist. Fix: --out in an existing directory.")
        entry = average(paths, out)
    print(
        f"{out}: the mean of {entry['checkpoints']} checkpoints (steps {', '.join(map(str, entry['steps']))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
