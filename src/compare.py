"""Why does one run beat another? Compare two runs' predictions on the same test split, example by example.

Writes compare.md, compare.html (a static page: open it in a browser) and compare.json to --out (default
outputs/compare/<A>-vs-<B>): each example's score under both runs (ROUGE-2 where the task has it, else the task's
first metric), the examples sorted by the gap between them, source / reference / both predictions side by side
with the words that differ marked; how often B wins, ties and loses; and the paired-bootstrap interval of the
difference B - A in the corpus metric (1,000 resamples, seeded). Logged as a W&B table when the runs used W&B.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.analysis.compare import Side, compare, load_side, log_to_wandb
from src.analysis.compare_page import summary_lines, to_html, to_markdown
from src.metrics.significance import CONFIDENCE, RESAMPLES, SEED
from src.metrics.text import SUPPORTED
from src.system.cli import command_parser
from src.system.errors import UserError, report_user_errors
from src.system.outputs import atomic_write_text, write_json
from src.system.process import setup_process

USAGE = """\
python -m src.compare RUN_A RUN_B                       # run directories (or their predictions.jsonl)
python -m src.compare RUN_A RUN_B --metric exact --out reports/a-vs-b --resamples 2000"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("compare", __doc__, USAGE)
    p.add_argument("run_a", help="run directory, src.eval directory or predictions.jsonl (A)")
    p.add_argument("run_b", help="the same for B, on the same split")
    p.add_argument(
        "--metric", help=f"the per-example metric (default rouge2, else the task's first): {SUPPORTED}"
    )
    p.add_argument("--out", help="where to write (default outputs/compare/<A>-vs-<B>)")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=SEED, help="bootstrap seed (default 0)")
    p.add_argument("--confidence", type=float, default=CONFIDENCE, help="interval level (default 0.95)")
    p.add_argument("--limit", type=int, default=500, help="examples shown in the .md and .html (default 500)")
    p.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="log the table to W&B: auto = when the runs used W&B (online if possible, else offline)",
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    """The command line's numbers and --out, before any run is read."""
    if args.resamples < 1:
        raise UserError(
            f"--resamples {args.resamples} is not a number of resamples. Fix: e.g. --resamples 1000."
        )
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence {args.confidence} is not a level. Fix: between 0 and 1, e.g. 0.95.")
    if args.limit < 0:
        raise UserError(f"--limit {args.limit} is negative. Fix: the examples to show, e.g. --limit 500.")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a directory. Fix: --out a directory.")


def default_out(a: Side, b: Side) -> Path:
    name = (
        f"{a.label}-vs-{b.label}" if a.label != b.label else f"{a.path.parent.name}-vs-{b.path.parent.name}"
    )
    return Path("outputs/compare") / name.replace("/", "_")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        check_args(args)
        a, b = load_side(args.run_a), load_side(args.run_b)
        if a.label == b.label:  # one run under two decodings, say: name them by their directories
            a.label, b.label = a.path.parent.name, b.path.parent.name
        result = compare(a, b, args.metric, args.resamples, args.seed, args.confidence)
        out = Path(args.out) if args.out else default_out(a, b)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot write to {out} ({err.strerror or err}). Fix: --out a directory you can write to."
            ) from None
        atomic_write_text(out / "compare.md", to_markdown(result, args.limit))
        atomic_write_text(out / "compare.html", to_html(result, args.limit))
        write_json(out / "compare.json", result)
        for key, value in summary_lines(result):
            print(f"{key}: {value}")
        mode = log_to_wandb(result, a, b, out, args.wandb)
        if mode:
            print(f"logged to W&B ({mode}) as job_type compare")
        print(f"written: {out / 'compare.md'}, {out / 'compare.html'}, {out / 'compare.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
