"""report.png: the grid's primary metric per variant, with the paper's figure beside each bar where it has one."""

from __future__ import annotations

import io
from pathlib import Path

from src.metrics.text import SUPPORTED, primary_metric


def chart(rows: list[dict], columns: list[str], path: Path) -> str | None:
    """A bar chart of the primary metric per run (paper's figure beside it when known); returns the metric."""
    import matplotlib  # on the first chart: its file-only backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    metric = primary_metric(c for c in columns if c in SUPPORTED)
    done = [r for r in rows if r.get(metric) is not None]
    if metric is None or not done:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(done)), 3.6), dpi=120)
    x = range(len(done))
    paper_col = f"paper {metric}"
    with_paper = paper_col in columns and any(r.get(paper_col) is not None for r in done)
    width = 0.4 if with_paper else 0.7
    errors = [r.get(f"{metric} std") or 0 for r in done]  # sample std over seeds, where there are several
    ax.bar(
        [i - (width / 2 if with_paper else 0) for i in x],
        [r[metric] for r in done],
        width,
        yerr=errors if any(errors) else None,
        capsize=3,
        label="this run",
    )
    if with_paper:
        ax.bar(
            [i + width / 2 for i in x], [r.get(paper_col) or 0 for r in done], width, label="paper", alpha=0.6
        )
        ax.legend()
    ax.set_xticks(list(x), [r["variant"] for r in done], rotation=30, ha="right")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{done[0].get('data')}: test {metric} by variant")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return metric
