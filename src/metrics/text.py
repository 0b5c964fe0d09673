"""Generation metrics that accumulate over a whole split and reduce across processes (ROUGE, exact match)."""

from __future__ import annotations

import absl.logging
import torch
from rouge_score import rouge_scorer
from torchmetrics import Metric

absl.logging.set_verbosity(absl.logging.WARNING)  # rouge_score logs "Using default tokenizer" per scorer
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
SUPPORTED = (*ROUGE_KEYS, "exact")


def normalize(text: str) -> str:
    return " ".join(text.split())


class TextMetrics(Metric):
    """Mean sentence-level ROUGE-1/2/L F1 (rouge_score, Porter stemming; no NLTK download) and exact match,
    on the 0-100 scale of the paper's tables.

    Args:
        names: which of `SUPPORTED` to compute.
    """

    full_state_update = False

    def __init__(self, names=SUPPORTED):
        super().__init__()
        unknown = set(names) - set(SUPPORTED)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; supported: {SUPPORTED}")
        self.names = tuple(names)
        rouge_keys = [k for k in self.names if k in ROUGE_KEYS]
        self._scorer = rouge_scorer.RougeScorer(rouge_keys, use_stemmer=True) if rouge_keys else None
        for name in self.names:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: list[str], references: list[str]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        for pred, ref in zip(predictions, references, strict=True):
            if self._scorer is not None:
                for key, score in self._scorer.score(ref, pred).items():
                    getattr(self, key).add_(score.fmeasure)
            if "exact" in self.names:
                self.exact.add_(float(normalize(pred) == normalize(ref)))
        self.count.add_(len(predictions))

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)
        return {name: (100.0 * getattr(self, name) / n).float() for name in self.names}
