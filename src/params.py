"""Print the Table-1 parameter budget of every variant next to the paper's, without downloading any weights.

python -m src.params                 # all ten variants, base-size architectures from conf/arch/ facts
python -m src.params --json          # the same as JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from src.process import setup_process
from src.variants import VARIANTS, variant_budget

CONF = Path(__file__).resolve().parents[1] / "conf"
COLUMNS = ("total", "embeddings", "from_checkpoint", "random")


def paper_table1() -> dict[str, dict[str, float]]:
    return OmegaConf.to_container(OmegaConf.load(CONF / "paper" / "rothe2020.yaml"))["table1"]


def budget_rows() -> list[dict]:
    paper = paper_table1()
    rows = []
    for v in VARIANTS:
        ours = {k: round(x / 1e6, 1) for k, x in variant_budget(v).as_dict().items()}
        # deviation relative to the paper's total: the paper's random column rounds cross-attention to 26M
        worst = max(abs(ours[c] - paper[v][c]) for c in COLUMNS) / paper[v]["total"]
        rows.append({"variant": v, **ours, "paper": paper[v], "max_deviation_pct": round(100 * worst, 2)})
    return rows


def main(argv=None) -> None:
    setup_process()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = budget_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
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


if __name__ == "__main__":
    main()
