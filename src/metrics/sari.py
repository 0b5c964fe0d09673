"""SARI (Xu et al., 2016) with the semantics of tensor2tensor's `sari_hook`, which Rothe et al. (2020) used.

The variant matters: scores differ between implementations. This one follows sari_hook:

- n-grams of orders 1-4 are taken as *sets* (an n-gram counts once per sentence, however often it occurs);
- keep and deletion compare source, prediction and targets with the targets' n-grams weighted by the share of
  non-empty targets that contain them; addition uses the plain set of target n-grams;
- keep and addition are F1 scores, deletion is precision only (beta = 0);
- an empty selection or an empty relevant set scores 1 (0/0 = 1), as in sari_hook;
- SARI = mean over orders of keep, addition and deletion, averaged: (keep + add + del) / 3.

HF evaluate's `sari` is another variant: it tokenizes with sacreBLEU's 13a tokenizer and follows the original
release's counting. On its card's example ("About 95 species are currently accepted." -> "About 95 you now get
in.") it reports 26.95; sari_hook semantics on whitespace tokens give 25.0 (tested). Split off the final period
by hand and this implementation gives 26.95 too: on that example the gap is tokenization.
Tokens here are whitespace-separated words, taken as given (no lowercasing, no re-tokenization), as the paper's
t2t pipeline took its token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

Weights = dict[tuple[str, ...], float]


def ngram_set(tokens: Sequence[str], n: int) -> Weights:
    return {tuple(tokens[i : i + n]): 1.0 for i in range(len(tokens) - n + 1)}


def _and(a: Weights, b: Weights) -> Weights:  # elementwise min over shared keys (Counter &)
    return {k: min(v, b[k]) for k, v in a.items() if k in b and min(v, b[k]) > 0}


def _minus(a: Weights, b: Weights) -> Weights:  # positive part of a - b (Counter -)
    out = {k: v - b.get(k, 0.0) for k, v in a.items()}
    return {k: v for k, v in out.items() if v > 0}


def _fbeta(true_positives: float, selected: float, relevant: float, beta: float = 1.0) -> float:
    precision = true_positives / selected if selected > 0 else 1.0
    if beta == 0:
        return precision
    recall = true_positives / relevant if relevant > 0 else 1.0
    if precision > 0 and recall > 0:
        b2 = beta * beta
        return (1 + b2) * precision * recall / (b2 * precision + recall)
    return 0.0


def sari_components(source: str, prediction: str, references: Sequence[str], max_n: int = 4):
    """(sari, keep, addition, deletion) for one example, each in [0, 1]."""
    src, pred = source.split(), prediction.split()
    refs = [r.split() for r in references]
    keep = add = delete = 0.0
    for n in range(1, max_n + 1):
        s, p = ngram_set(src, n), ngram_set(pred, n)
        weighted: Weights = {}
        nonempty = 0
        for ref in refs:
            grams = ngram_set(ref, n)
            if grams:
                nonempty += 1
                for g in grams:
                    weighted[g] = weighted.get(g, 0.0) + 1.0
        weighted = {g: c / nonempty for g, c in weighted.items()}
        target = dict.fromkeys(weighted, 1.0)

        s_and_p, s_and_t = _and(s, p), _and(s, weighted)
        keep += _fbeta(sum(_and(s_and_p, s_and_t).values()), sum(s_and_p.values()), sum(s_and_t.values()))

        s_not_p, s_not_t = _minus(s, p), _minus(s, weighted)
        delete += _fbeta(
            sum(_and(s_not_p, s_not_t).values()), sum(s_not_p.values()), sum(s_not_t.values()), 0
        )

        added = _minus(p, s)
        add += _fbeta(sum(_and(added, target).values()), sum(added.values()), sum(_minus(target, s).values()))
    keep, add, delete = keep / max_n, add / max_n, delete / max_n
    return (keep + add + delete) / 3, keep, add, delete


def sari(source: str, prediction: str, references: Sequence[str]) -> float:
    """SARI of one example on the 0-100 scale."""
    return 100.0 * sari_components(source, prediction, references)[0]
