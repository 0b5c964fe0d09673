"""paper=rothe2020: one cell of the paper's tables, with the paper's settings (conf/paper/).

What a composed config may ask of it: a task the paper has settings for (conf/paper/rothe2020/<data>.yaml) and a
variant of that task's table (`paper.variants`: Table 1's rows less the task's `paper.excluded`).
"""

from __future__ import annotations

from src.system.errors import UserError
from src.system.paths import CONF

#: the paper's own folder: <task>.yaml per task, and figures.yaml (its tables as data, never composed)
PAPER_DIR = CONF / "paper" / "rothe2020"


def paper_tasks() -> list[str]:
    """The tasks (data= names) the paper has settings for."""
    return sorted(p.stem for p in PAPER_DIR.glob("*.yaml") if p.stem != "figures")


def check_protocol(paper: dict | None, variant: str | None, task: str) -> None:
    """paper=rothe2020 runs one cell of the paper's tables: a task and variant it has.

    Args:
        paper: the composed `paper` node (None: no paper picked): its `task`, `variants` and `left_out`.
        variant: the run's `variant`; task: its `data.name`.
    """
    if paper is None:
        return
    rows = paper["variants"].split(",")
    if paper["task"] is None:
        raise UserError(
            f"paper=rothe2020 has no settings for data={task}: the paper's tasks are "
            f"{', '.join(paper_tasks())}. Fix: data=<one of them>, or drop paper=rothe2020 for a task of your own."
        )
    if variant not in rows:
        given = f"variant={variant} is not in" if variant else "a variant is needed for"
        why = f" ({paper['left_out']})" if paper.get("left_out") else ""
        raise UserError(
            f"paper=rothe2020: {given} the paper's {paper['task']} table{why}. "
            f"Fix: variant=<one of {', '.join(rows)}>."
        )
