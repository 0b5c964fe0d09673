"""Is B's corpus score really different from A's? The paired bootstrap over test examples (Koehn, 2004).

Both systems are scored on the same resampled examples (drawn with replacement, as many as the test split has),
so the interval is of the *paired* difference: it is narrow when two systems fail on the same hard examples.
The corpus metric is recomputed on every resample from summed per-example statistics
(`src.metrics.text.ExampleScorer`), so corpus BLEU is resampled as corpus BLEU, not as a mean of sentence BLEU.
Several seeds of one system: each resample scores the mean over seeds of their corpus scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from src.metrics.text import ExampleScorer

RESAMPLES, SEED, CONFIDENCE = 1000, 0, 0.95


@dataclass(frozen=True)
class Interval:
    """B minus A in the corpus metric, with its paired-bootstrap percentile interval."""

    metric: str
    delta: float  # observed difference, B - A (0-100 scale)
    low: float
    high: float
    confidence: float
    p_value: float  # share of resamples in which the difference is zero or of the other sign
    resamples: int
    seed: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}

    def __str__(self) -> str:
        star = " *" if self.significant else ""
        return f"{self.delta:+.2f} [{self.low:+.2f}, {self.high:+.2f}]{star}"


def _mean_corpus(metric: str, systems: Sequence[np.ndarray], weights: np.ndarray, count: int) -> float:
    return float(np.mean([ExampleScorer.corpus(metric, weights @ stats, count) for stats in systems]))


def paired_bootstrap(
    metric: str,
    a: np.ndarray | Sequence[np.ndarray],
    b: np.ndarray | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The difference B - A in `metric` over the same examples, and its percentile interval.

    a, b: per-example statistics (examples x width, from `ExampleScorer.statistics`) of one run each, or a list
    of such arrays (one per seed) whose corpus scores are averaged.
    """
    a_runs = [a] if isinstance(a, np.ndarray) else list(a)
    b_runs = [b] if isinstance(b, np.ndarray) else list(b)
    sizes = {len(x) for x in a_runs + b_runs}
    if len(sizes) != 1:
        raise ValueError(f"the runs scored different numbers of examples ({sorted(sizes)}): not paired")
    n = sizes.pop()
    if n == 0:
        raise ValueError("no examples to resample")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("resamples must be >= 1 and confidence in (0, 1)")
    ones = np.ones(n)
    observed = _mean_corpus(metric, b_runs, ones, n) - _mean_corpus(metric, a_runs, ones, n)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for r in range(resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        deltas[r] = _mean_corpus(metric, b_runs, weights, n) - _mean_corpus(metric, a_runs, weights, n)
    tail = 100.0 * (1 - confidence) / 2
    low, high = np.percentile(deltas, [tail, 100.0 - tail])
    if observed > 0:
        p_value = float(np.mean(deltas <= 0))
    elif observed < 0:
        p_value = float(np.mean(deltas >= 0))
    else:
        p_value = 1.0
    return Interval(metric, observed, float(low), float(high), confidence, p_value, resamples, seed)
