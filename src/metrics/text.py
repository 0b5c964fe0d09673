"""Generation metrics that accumulate over a whole split and reduce across processes.

Every metric keeps summable statistics (sums of sentence scores, or n-gram counts for corpus BLEU), so the
value over a split is the same on one process or under DDP. Scores are on the paper's 0-100 scale.

| name | what |
|---|---|
| rouge1, rouge2, rougeL | mean ROUGE F1 (rouge_score, Porter stemming; no NLTK download) |
| rougeLsum | ROUGE-Lsum: summary-level LCS over sentences (references split on newlines) |
| exact | exact match after whitespace normalisation |
| sari | SARI with tensor2tensor sari_hook semantics (src.metrics.sari) |
| bleu | corpus BLEU by sacreBLEU (13a tokenization; `bleu_lowercase` for the paper's uncased WMT BLEU) |
| bleu_nltk | corpus BLEU as NLTK computes it (whitespace tokens, case-sensitive), the paper's WikiSplit BLEU |
"""

from __future__ import annotations

import math
import re

import absl.logging
import torch
from nltk.translate.bleu_score import brevity_penalty, closest_ref_length, modified_precision
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from torchmetrics import Metric

from src.metrics.sari import sari

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
MEAN_METRICS = (*ROUGE_KEYS, "exact", "sari")
SUPPORTED = (*MEAN_METRICS, "bleu", "bleu_nltk")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def quiet_rouge_scorer(keys: list[str]):
    """rouge_score's scorer, without its "Using default tokenizer" log line (absl's level is restored after)."""
    level = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.WARNING)
    try:
        return rouge_scorer.RougeScorer(keys, use_stemmer=True)
    finally:
        absl.logging.set_verbosity(level)


def normalize(text: str) -> str:
    return " ".join(text.split())


def sentences(text: str) -> str:
    """Newline-separated sentences for ROUGE-Lsum: newlines if the text has them, else split after . ! ?"""
    parts = text.splitlines() if "\n" in text.strip() else _SENTENCE_END.split(text.strip())
    return "\n".join(p.strip() for p in parts if p.strip())


class GenerationMetrics(Metric):
    """The metrics of one task, accumulated over a split.

    Args:
        names: which of `SUPPORTED` to compute.
        bleu_lowercase: sacreBLEU on lowercased text (the paper's WMT figures are uncased BLEU).
    """

    full_state_update = False

    def __init__(self, names=("rouge1", "rouge2", "rougeL", "exact"), bleu_lowercase: bool = False):
        super().__init__()
        unknown = set(names) - set(SUPPORTED)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; supported: {', '.join(SUPPORTED)}")
        self.names = tuple(names)
        rouge = [k for k in self.names if k in ROUGE_KEYS]
        self._rouge = quiet_rouge_scorer(rouge) if rouge else None
        self._sacrebleu = BLEU(lowercase=bleu_lowercase) if "bleu" in self.names else None
        for name in self.names:
            if name in MEAN_METRICS:
                self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        if (
            "bleu" in self.names
        ):  # sacreBLEU's sufficient statistics: hyp_len, ref_len, correct 1-4, total 1-4
            self.add_state("bleu_stats", default=torch.zeros(10, dtype=torch.float64), dist_reduce_fx="sum")
        if "bleu_nltk" in self.names:  # NLTK's: numerators 1-4, denominators 1-4, hyp_len, ref_len
            self.add_state("nltk_stats", default=torch.zeros(10, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, predictions: list[str], references: list[str | list[str]], sources: list[str] | None = None
    ) -> None:
        """Add examples: each reference a string, or a list of strings (several references of one example).

        Texts are scored as given: callers pass the task's own source and reference text.
        """
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if "sari" in self.names and (sources is None or len(sources) != len(predictions)):
            raise ValueError("sari needs the sources of the predictions")
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        if any(not rs for rs in refs):
            raise ValueError("every prediction needs at least one reference")
        lsum = "rougeLsum" in self.names
        for i, (pred, rs) in enumerate(zip(predictions, refs, strict=True)):
            if self._rouge is not None:  # several references: the best-scoring one, per ROUGE type
                targets = [sentences(r) for r in rs] if lsum else rs
                scores = self._rouge.score_multi(targets, sentences(pred) if lsum else pred)
                for key, score in scores.items():
                    getattr(self, key).add_(score.fmeasure)
            if "exact" in self.names:
                self.exact.add_(float(any(normalize(pred) == normalize(r) for r in rs)))
            if "sari" in self.names:
                self.sari.add_(sari(sources[i], pred, rs) / 100.0)
            if "bleu_nltk" in self.names:
                self.nltk_stats.add_(torch.tensor(_nltk_stats(pred, rs), dtype=torch.float64))
        if self._sacrebleu is not None:
            if len({len(rs) for rs in refs}) != 1:
                raise ValueError("bleu needs the same number of references for every example")
            streams = [list(stream) for stream in zip(*refs, strict=True)]
            stats = self._sacrebleu._extract_corpus_statistics(predictions, streams)
            self.bleu_stats.add_(torch.tensor(stats, dtype=torch.float64).sum(0))
        self.count.add_(len(predictions))

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)
        out = {name: (100.0 * getattr(self, name) / n).float() for name in self.names if name in MEAN_METRICS}
        if "bleu" in self.names:
            s = [int(x) for x in self.bleu_stats.tolist()]
            score = BLEU.compute_bleu(correct=s[2:6], total=s[6:10], sys_len=s[0], ref_len=s[1]).score
            out["bleu"] = torch.tensor(score, dtype=torch.float32)
        if "bleu_nltk" in self.names:
            out["bleu_nltk"] = torch.tensor(_nltk_corpus_bleu(self.nltk_stats.tolist()), dtype=torch.float32)
        return {name: out[name] for name in self.names}


def _nltk_stats(prediction: str, references: list[str]) -> list[float]:
    hyp, refs = prediction.split(), [r.split() for r in references]
    nums, dens = [], []
    for n in range(1, 5):
        p = modified_precision(refs, hyp, n)  # a Fraction, not normalised
        nums.append(p.numerator)
        dens.append(p.denominator)
    return [*nums, *dens, len(hyp), closest_ref_length(refs, len(hyp))]


def _nltk_corpus_bleu(stats: list[float]) -> float:
    """nltk.translate.bleu_score.corpus_bleu (uniform weights, no smoothing) from summed statistics, 0-100."""
    nums, dens, hyp_len, ref_len = stats[0:4], stats[4:8], int(stats[8]), int(stats[9])
    if any(num == 0 for num in nums):  # NLTK returns 0 when any order has no match
        return 0.0
    log_p = sum(0.25 * math.log(num / den) for num, den in zip(nums, dens, strict=True))
    return 100.0 * brevity_penalty(ref_len, hyp_len) * math.exp(log_p)
