"""The paired bootstrap (src/metrics/significance.py) on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from src.metrics.significance import paired_bootstrap
from src.metrics.text import ExampleScorer, GenerationMetrics


def mean_stats(scores) -> np.ndarray:
    """Per-example statistics of a mean metric (exact, ROUGE): one column, the sentence score in [0, 1]."""
    return np.asarray(scores, dtype=float)[:, None]


def test_bootstrap_of_identical_runs_is_exactly_zero():
    a = mean_stats(np.linspace(0, 1, 50))
    iv = paired_bootstrap("rouge2", a, a.copy())
    assert (iv.delta, iv.low, iv.high, iv.p_value) == (0.0, 0.0, 0.0, 1.0) and not iv.significant


def test_bootstrap_of_a_constant_per_example_gain_is_that_gain():
    a = mean_stats(np.random.default_rng(1).uniform(0, 0.8, 200))
    iv = paired_bootstrap("rouge2", a, a + 0.1)  # B is 10 points better on every single example
    assert iv.delta == pytest.approx(10.0)
    assert iv.low == pytest.approx(10.0) and iv.high == pytest.approx(10.0)
    assert iv.significant and iv.p_value == 0.0


def test_bootstrap_interval_matches_the_binomial_answer():
    # B is right on 30 of 100 examples where A is wrong, equal elsewhere: resampled, the gain is 100/n x a
    # Binomial(100, 0.3) count, whose 2.5% and 97.5% quantiles are known exactly
    a = mean_stats(np.zeros(100))
    b = mean_stats(np.r_[np.ones(30), np.zeros(70)])
    iv = paired_bootstrap("exact", a, b, resamples=2000, seed=3)
    low, high = binom.ppf([0.025, 0.975], 100, 0.3)
    assert iv.delta == pytest.approx(30.0)
    assert abs(iv.low - low) <= 1.0 and abs(iv.high - high) <= 1.0
    again = paired_bootstrap("exact", a, b, resamples=2000, seed=3)
    assert (again.low, again.high) == (iv.low, iv.high)  # seeded


def test_bootstrap_resamples_corpus_bleu_and_averages_seeds():
    scorer = ExampleScorer(["bleu"])
    refs = [
        "the cat sat on the mat",
        "a dog ran in the park",
        "birds fly over the sea",
        "it rains all day long",
    ]
    a = ["the cat sat on a mat", "a dog ran", "birds fly over the sea", "it rains"]
    b = ["the cat sat on the mat", "a dog ran in the park", "birds fly high", "it rains all day"]
    sa, sb = scorer.statistics(a, refs)["bleu"], scorer.statistics(b, refs)["bleu"]
    corpus = {}
    for name, preds in (("a", a), ("b", b)):
        m = GenerationMetrics(["bleu"])
        m.update(preds, refs)
        corpus[name] = float(m.compute()["bleu"])
    iv = paired_bootstrap("bleu", sa, sb, resamples=200)
    assert iv.delta == pytest.approx(
        corpus["b"] - corpus["a"], abs=1e-4
    )  # corpus BLEU, not a mean of sentences
    seeds = paired_bootstrap("bleu", [sa, sa], [sb, sa], resamples=200)  # B's seeds: b and a -> half the gap
    assert seeds.delta == pytest.approx(iv.delta / 2, abs=1e-4)
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap("bleu", sa, sb[:3])
