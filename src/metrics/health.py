"""Are the generated outputs degenerate? Distinct share, the most common output's share, repeated n-grams, length.

A model that writes the same string for every input (a common failure of warm-started decoders, noticed too
late when only ROUGE is watched) shows here at the first validation.
"""

from __future__ import annotations

from collections import Counter

#: A validation whose predictions are fewer than this share distinct, or whose most common prediction covers
#: more than `TOP_SHARE_ALARM`, is reported as collapsed (with at least `MIN_EXAMPLES` predictions).
DISTINCT_ALARM, TOP_SHARE_ALARM, MIN_EXAMPLES = 20.0, 50.0, 5


def output_health(predictions: list[str], references: list[str], n: int = 3) -> dict[str, float]:
    """Percentages: distinct predictions, the most common prediction's share, repeated n-grams within a
    prediction (of all its n-grams); and the mean prediction length over the mean reference length (words)."""
    if not predictions:
        return {}
    total = repeated = 0
    for text in predictions:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total, repeated = total + len(grams), repeated + len(grams) - len(set(grams))
    ref_words = sum(len(r.split()) for r in references) / max(len(references), 1)
    pred_words = sum(len(p.split()) for p in predictions) / len(predictions)
    return {
        "distinct": 100.0 * len(set(predictions)) / len(predictions),
        "top_share": 100.0 * Counter(predictions).most_common(1)[0][1] / len(predictions),
        f"repeated_{n}grams": 100.0 * repeated / total if total else 0.0,
        "length_ratio": pred_words / ref_words if ref_words else 0.0,
    }


def collapse(health: dict[str, float], count: int) -> str | None:
    """Why these outputs look collapsed, or None."""
    if count < MIN_EXAMPLES or not health:
        return None
    if health["distinct"] < DISTINCT_ALARM or health["top_share"] > TOP_SHARE_ALARM:
        return (
            f"{health['distinct']:.0f}% of {count} predictions are distinct and the most common one is "
            f"{health['top_share']:.0f}% of them"
        )
    return None
