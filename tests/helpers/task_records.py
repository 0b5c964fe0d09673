"""Examples in the schema of each task's Hub dataset (column names and nesting as the Hub dataset has them), made
of synthetic sentences: the local fixtures every paper task trains a step on."""

from __future__ import annotations

import random

from src.data.synthetic import make_synthetic

TEXTS = [r["source"] for r in make_synthetic({"train": 40, "validation": 0, "test": 0}, seed=1)["train"]]


def record(task: str, i: int) -> dict:
    """One example in the schema of the task's Hub dataset."""
    rng = random.Random(i)
    a, b, c = rng.sample(TEXTS, 3)
    if task.startswith("cnn_dailymail"):
        return {"article": f"{a} {b} {c}", "highlights": f"{a}\n{b}", "id": f"{i:04x}"}
    if task in ("xsum", "gigaword"):
        return {
            "document": f"{a.title()} {b}",
            "summary": a.title(),
            **({"id": str(i)} if task == "xsum" else {}),
        }
    if task.startswith("wmt14"):
        return {"translation": {"de": f"Der Satz {i} : {a}", "en": a}}
    if task == "discofuse":
        fused_into_one = i % 2 == 0
        return {
            "connective_string": "and",
            "discourse_type": "PAIR_CONN",
            "has_coref_type_pronoun": 0.0,
            "has_coref_type_nominal": 0.0,
            "incoherent_first_sentence": a,
            "incoherent_second_sentence": b,
            "coherent_first_sentence": f"{a[:-2]} and {b}" if fused_into_one else a,
            "coherent_second_sentence": "" if fused_into_one else b,
        }
    if task == "wikisplit":
        return {"complex_sentence": f"{a[:-2]} , {b}", "simple_sentence_1": a, "simple_sentence_2": b}
    raise KeyError(task)
