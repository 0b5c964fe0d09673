"""Table 1 of the paper beside the project's own count: every variant's parameter budget at base size, built on the
meta device from conf/arch/ facts (nothing downloaded, nothing allocated)."""

from __future__ import annotations

from src.paper.figures import paper_figures
from src.paper.variants import VARIANTS, variant_budget

COLUMNS = ("total", "embeddings", "from_checkpoint", "random")


def paper_table1() -> dict[str, dict[str, float]]:
    return paper_figures()["table1"]


def budget_rows() -> list[dict]:
    paper = paper_table1()
    rows = []
    for v in VARIANTS:
        ours = {k: round(x / 1e6, 1) for k, x in variant_budget(v).as_dict().items()}
        # deviation relative to the paper's total: the paper's random column rounds cross-attention to 26M
        worst = max(abs(ours[c] - paper[v][c]) for c in COLUMNS) / paper[v]["total"]
        rows.append({"variant": v, **ours, "paper": paper[v], "max_deviation_pct": round(100 * worst, 2)})
    return rows
