"""A seeded, offline seq2seq task on which a pretrained encoder has something to gain.

The source mentions two everyday things ("anna talked about the violin and later about the tiger ."), the
target names their categories ("instrument then animal"). A third of each category's words never appear in
training and are the only ones used in validation and test, so the held-out splits can only be solved with
what pretraining knows about words: a randomly initialised model memorises the training words and stops there.
"""

from __future__ import annotations

import random

#: Eight categories of twelve everyday words; the order matters (which third is held out follows it).
_WORDS = """
animal: dog cat horse tiger lion elephant rabbit wolf bear monkey sheep fox
fruit: apple banana grape cherry lemon peach pear mango melon plum orange strawberry
instrument: violin piano guitar drum flute trumpet cello harp saxophone clarinet trombone banjo
vehicle: car bus truck bicycle train boat plane motorcycle tractor van taxi ship
clothing: shirt jacket dress hat coat sweater skirt scarf boots gloves jeans socks
furniture: chair table sofa bed desk shelf cabinet couch stool dresser bench wardrobe
profession: doctor teacher lawyer nurse farmer engineer pilot chef soldier painter dentist baker
country: france germany italy spain japan china india brazil canada mexico egypt russia
"""
CATEGORIES: dict[str, tuple[str, ...]] = {
    name: tuple(words.split()) for name, words in (line.split(": ") for line in _WORDS.strip().splitlines())
}
NAMES = ("anna", "john", "maria", "david", "sarah", "peter", "laura", "tom", "emma", "james", "lucy", "paul")
VERBS = ("talked", "wrote", "asked", "read", "dreamed", "sang", "thought", "joked", "complained", "heard")
TIMES = ("yesterday", "today", "on monday", "last week", "this morning", "at night", "in the summer", "")
TEMPLATES = (
    "{name} {verb} about the {a} and later about the {b} {time} .",
    "{time} {name} {verb} about the {a} , then about the {b} .",
    "first the {a} , then the {b} : {name} {verb} about both {time} .",
)
SPLITS = ("train", "validation", "test")


def split_vocabulary(seed: int = 0, held_out_fraction: float = 1 / 3) -> dict[str, dict[str, list[str]]]:
    """Per split, the words each category may use: train sees the seen words, validation/test the held-out."""
    rng = random.Random(seed)
    seen, held = {}, {}
    for cat, words in CATEGORIES.items():
        words = list(words)
        rng.shuffle(words)
        k = max(1, round(len(words) * held_out_fraction))
        held[cat], seen[cat] = words[:k], words[k:]
    return {"train": seen, "validation": held, "test": held}


def make_example(rng: random.Random, words: dict[str, list[str]]) -> dict[str, str]:
    cat_a, cat_b = rng.sample(sorted(words), 2)
    text = rng.choice(TEMPLATES).format(
        name=rng.choice(NAMES),
        verb=rng.choice(VERBS),
        a=rng.choice(words[cat_a]),
        b=rng.choice(words[cat_b]),
        time=rng.choice(TIMES),
    )
    return {"source": " ".join(text.split()), "target": f"{cat_a} then {cat_b}"}


def make_synthetic(sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """Generate the three splits; the same seed and sizes always give the same examples.

    Args:
        sizes: examples per split, e.g. {"train": 4000, "validation": 200, "test": 200}.
    """
    vocab = split_vocabulary(seed)
    out = {}
    for i, split in enumerate(SPLITS):
        rng = random.Random(seed * 1000 + i)
        out[split] = [make_example(rng, vocab[split]) for _ in range(sizes[split])]
    return out
