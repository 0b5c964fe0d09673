"""The paper's figures as data: Table 1's parameter counts and the per-task scores, transcribed from Rothe,
Narayan & Severyn (TACL 2020). Read by `python -m src.params` and `python -m src.report`; never composed. Table 1's
rows are the paper's variants in its order (`src.paper.variants.VARIANTS`)."""

from __future__ import annotations

from omegaconf import OmegaConf

from src.system.paths import CONF

FIGURES = CONF / "paper" / "rothe2020" / "figures.yaml"


def paper_figures() -> dict:
    """The whole file: `table1`, `results` per task and variant, `tolerance`."""
    return OmegaConf.to_container(OmegaConf.load(FIGURES))
