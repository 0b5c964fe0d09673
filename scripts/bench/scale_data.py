"""Large files in the Hub's surface format for the data-preparation benchmark (scripts/bench_data.py) and the
scale tests: a Gigaword-like file (lowercased, pre-tokenized, `-lrb-`, `#` for digits, `unk`; ~31-word documents,
~8-word summaries) and a DiscoFuse-like one (pre-tokenized sentences with ` , ` and ` . `, `'s` and `n't`
detached, the four Hub columns, the second coherent sentence empty in most rows).

Words are drawn from a fixed list so a file depends only on (kind, rows, seed); written in blocks, so a
million-row file takes seconds and little memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_WORDS = (  # noqa: SIM905 - a readable block of words
    "the of to and in a for on that is said was with by at from as it his has have be an are will who "
    "government minister president police official people year week state country city party officials "
    "talks leader new first two three million percent former world security economic foreign national "
    "prices market shares company bank trade oil workers election vote court military forces troops "
    "killed attack rebels peace agreement report sunday monday tuesday wednesday thursday friday saturday "
    "china japan russia iraq israel europe union united nations council team match win cup league season"
).split()
_GIGAWORD_EXTRA = ["-lrb-", "-rrb-", "##", "###", "#.#", "unk", "'s", ",", "``", "''"]
_DISCO_EXTRA = ["'s", "n't", ",", "(", ")", '"', "1992", "HP-41C", "re-election"]


def _lengths(rng, n: int, mu: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.round(rng.lognormal(mu, sigma, n)), lo, hi).astype(np.int64)


def _sentences(rng, vocab: np.ndarray, lengths: np.ndarray, capitalise: bool, end: str) -> list[str]:
    words = vocab[rng.integers(0, len(vocab), int(lengths.sum()))]
    out, at = [], 0
    for k in lengths.tolist():
        w = words[at : at + k].tolist()
        at += k
        if capitalise:
            w[0] = w[0].capitalize()
        out.append(" ".join(w) + end)
    return out


def write_scale_file(kind: str, rows: int, path: Path, seed: int = 0, block: int = 50_000) -> Path:
    """`rows` examples of `kind` (gigaword or discofuse) as JSONL at `path`."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            if kind == "gigaword":
                vocab = np.array(_WORDS + _GIGAWORD_EXTRA)
                docs = _sentences(rng, vocab, _lengths(rng, n, 3.4, 0.3, 6, 90), False, " .")
                sums = _sentences(rng, vocab, _lengths(rng, n, 2.0, 0.3, 3, 25), False, "")
                f.writelines(
                    json.dumps({"document": d, "summary": s}) + "\n" for d, s in zip(docs, sums, strict=True)
                )
            elif kind == "discofuse":
                vocab = np.array(_WORDS + _DISCO_EXTRA)
                first = _sentences(rng, vocab, _lengths(rng, n, 2.6, 0.35, 4, 60), True, " .")
                second = _sentences(rng, vocab, _lengths(rng, n, 2.4, 0.35, 3, 50), True, " .")
                single = rng.random(n) < 0.7
                for a, b, one in zip(first, second, single.tolist(), strict=True):
                    fused = a[:-2] + " , but " + b[0].lower() + b[1:] if one else a
                    f.write(
                        json.dumps(
                            {
                                "incoherent_first_sentence": a,
                                "incoherent_second_sentence": b,
                                "coherent_first_sentence": fused,
                                "coherent_second_sentence": "" if one else b,
                                "connective_string": ", but" if one else "",
                                "discourse_type": "PAIR_CONN" if one else "SINGLE_S_COORD",
                            }
                        )
                        + "\n"
                    )
            else:
                raise ValueError(f"unknown kind {kind!r}: gigaword or discofuse")
    return path
