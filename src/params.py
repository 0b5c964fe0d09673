"""Print the Table-1 parameter budget of every variant next to the paper's, without downloading any weights."""

from __future__ import annotations

import argparse
import json

from src.paper.budget import budget_rows
from src.system.cli import command_parser
from src.system.errors import report_user_errors
from src.system.process import setup_process

USAGE = """\
python -m src.params                 # all ten variants, base-size architectures from conf/arch/ facts
python -m src.params --json          # the same as JSON"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("params", __doc__, USAGE)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_process()
    with report_user_errors():
        rows = budget_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        "| variant | total | embeddings | from checkpoint | random | paper (total / emb / ckpt / random) | max dev. |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        p = r["paper"]
        print(
            f"| {r['variant']} | {r['total']}M | {r['embeddings']}M | {r['from_checkpoint']}M | {r['random']}M | "
            f"{p['total']} / {p['embeddings']} / {p['from_checkpoint']} / {p['random']} | {r['max_deviation_pct']}% |"
        )
    print(
        "\nmax dev.: largest gap over the four columns, as a share of the paper's total (millions, base size)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
