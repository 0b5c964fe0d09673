"""paper=rothe2020 (paper=rothe2020): one cell of the paper's tables, with the paper's settings (conf/paper/).

What a composed config may ask of it: a task the paper has settings for (conf/paper/rothe2020/<data>.yaml) and a
variant of that task's table (`paper.variants`: Table 1's rows less the task's `paper.excluded`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from src.system.errors import UserError
from src.system.paths import CONF

#: the paper's own folder: <task>.yaml per task, and figures.yaml (its tables as data, never composed)
PAPER_DIR = CONF / "paper" / "rothe2020"


def paper_tasks() -> list[str]:
    """The tasks (data= names) the paper has settings for."""
    return sorted(p.stem for p in PAPER_DIR.glob("*.yaml") if p.stem != "figures")


def check_protocol(cfg: DictConfig) -> None:
    """paper=rothe2020 (paper=rothe2020) runs one cell of the paper's tables: a task and variant it has."""
    paper = cfg.get("paper")
    if paper is None:
        return
    rows = paper.variants.split(",")
    if paper.task is None:
        raise UserError(
            f"paper=rothe2020 has no settings for data={cfg.data.name}: the paper's tasks are "
            f"{', '.join(paper_tasks())}. Fix: data=<one of them>, or drop paper=rothe2020 for a task of your own."
        )
    if cfg.get("variant") not in rows:
        given = f"variant={cfg.variant} is not in" if cfg.get("variant") else "a variant is needed for"
        why = f" ({paper.left_out})" if paper.get("left_out") else ""
        raise UserError(
            f"paper=rothe2020: {given} the paper's {paper.task} table{why}. "
            f"Fix: variant=<one of {', '.join(rows)}>."
        )
