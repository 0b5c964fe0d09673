"""Data: the synthetic task, reading records, bad input, the tokenization cache, bucketed batches."""

from __future__ import annotations

import json
import logging

import lightning as L
import numpy as np
import pytest

from src.config.schema import data_config
from src.data.datamodule import BucketBatchSampler, Seq2SeqDataModule
from src.data.sources import FieldSpec, load_pairs
from src.data.synthetic import CATEGORIES, make_synthetic, split_vocabulary
from src.models.checkpoints import load_tokenizer
from src.system.errors import UserError
from tests.helpers.checkpoints import bert_special_ids

SIZES = {"train": 500, "validation": 50, "test": 50}
PLAIN = {"source": FieldSpec.of("source"), "target": FieldSpec.of("target")}


def test_synthetic_is_seeded_and_tests_only_held_out_words():
    a, b = make_synthetic(SIZES, seed=3), make_synthetic(SIZES, seed=3)
    assert a == b
    assert make_synthetic(SIZES, seed=4)["train"] != a["train"]
    vocab = split_vocabulary(3)
    seen = {w for words in vocab["train"].values() for w in words}
    held = {w for words in vocab["test"].values() for w in words}
    assert seen.isdisjoint(held)
    assert len(held) == 4 * len(CATEGORIES)  # a third of 12 words per category
    for row in a["test"]:
        assert not seen & set(row["source"].split())


def test_synthetic_targets_are_the_categories_of_the_source_words():
    category_of = {w: c for c, words in CATEGORIES.items() for w in words}
    for row in make_synthetic(SIZES, seed=0)["train"][:100]:
        mentioned = [category_of[w] for w in row["source"].split() if w in category_of]
        first, _, second = row["target"].partition(" then ")
        assert mentioned == [first, second]


def write_split(directory, split, rows):
    directory.mkdir(exist_ok=True)
    (directory / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def jsonl_pairs(path, split="train", **kwargs):
    return load_pairs(loader="jsonl", split=split, path=str(path), **{**PLAIN, **kwargs})


def test_nested_and_joined_columns():
    wmt = {"translation": {"de": "Hallo Welt", "en": "hello world"}}
    assert FieldSpec.of("translation.en").read(wmt) == "hello world"
    disco = {"a": "First one.", "b": ""}
    assert FieldSpec.of(["a", "b"]).read(disco) == "First one."  # empty parts are skipped
    assert FieldSpec.of(["a", "b"], " <::::> ").read({"a": "x .", "b": "y ."}) == "x . <::::> y ."
    assert FieldSpec.of(["a", "b"]).read({"a": "", "b": " "}) is None
    assert FieldSpec.of("a").read({"a": 3}) is None


def test_empty_and_non_string_fields_are_dropped_and_counted(tmp_path, caplog):
    rows = [
        {"source": "a b c", "target": "a"},
        {"source": "", "target": "x"},
        {"source": 3, "target": "y"},
        {"source": "d e", "target": None},
        {"source": "d e", "target": "d"},
    ]
    write_split(tmp_path, "train", rows)
    with caplog.at_level(logging.WARNING):
        sources, targets, stats = jsonl_pairs(tmp_path)
    assert (sources, targets) == (["a b c", "d e"], ["a", "d"])
    assert stats.dropped_empty == 3 and stats.rows == 2
    assert "dropped 3 rows" in caplog.text


def test_missing_column_lists_the_columns_it_has(tmp_path):
    write_split(tmp_path, "train", [{"document": "x", "translation": {"de": "a", "en": "b"}}])
    with pytest.raises(UserError, match=r"no column 'source' \(columns: document, translation.\{de,en\}\)"):
        jsonl_pairs(tmp_path)
    with pytest.raises(UserError, match=r"no column 'translation.fr'"):
        jsonl_pairs(tmp_path, source=FieldSpec.of("translation.fr"), target=FieldSpec.of("document"))


def test_malformed_line_and_non_utf8_name_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"source": "a", "target": "b"}\n{"source": oops\n')
    with pytest.raises(UserError, match=r"train.jsonl line 2 is not valid JSON"):
        jsonl_pairs(tmp_path)
    (tmp_path / "train.jsonl").write_bytes(
        b'{"source": "a", "target": "b"}\n{"source": "\xff", "target": "b"}\n'
    )
    with pytest.raises(UserError, match=r"train.jsonl line 2 is not UTF-8"):
        jsonl_pairs(tmp_path)


def test_empty_split_and_missing_file(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(UserError, match="the train split is empty"):
        jsonl_pairs(tmp_path)
    with pytest.raises(UserError, match=r"missing data file .*test.jsonl \(found: train.jsonl\)"):
        jsonl_pairs(tmp_path, split="test")
    with pytest.raises(UserError, match=r"missing data file .*dev.jsonl"):  # a split name that does not exist
        jsonl_pairs(tmp_path, split="validation", split_name="dev")


@pytest.mark.parametrize(
    ("hub", "columns", "message"),
    [
        (("wmt/wmt14", "de-en", None), ("translation.en", "translation.de"), r"wmt/wmt14 \(de-en\) is"),
        # a revision (a script repository's Parquet export) reaches the loader and is named
        (
            ("EdinburghNLP/xsum", "default", "refs/convert/parquet"),
            ("document", "summary"),
            r"EdinburghNLP/xsum \(default\) at refs/convert/parquet is",
        ),
    ],
)
def test_hub_dataset_offline_is_a_clear_error(monkeypatch, hub, columns, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=rf"dataset {message} not in the local cache .* data.path=DIR"):
        load_pairs(
            loader="hub",
            split="train",
            hub_name=hub[0],
            hub_config=hub[1],
            hub_revision=hub[2],
            source=FieldSpec.of(columns[0]),
            target=FieldSpec.of(columns[1]),
        )


@pytest.fixture
def bert_tok(tiny):
    tok = load_tokenizer(tiny["bert"])
    ids = bert_special_ids(tok)
    return tok, ids


def datamodule(tok, ids, tmp_path, seed: int = 0, **keys) -> Seq2SeqDataModule:
    config = data_config(
        {
            "name": "t",
            "loader": "synthetic",
            "max_source_length": 8,
            "max_target_length": 4,
            "batch_size": 4,
            "eval_batch_size": None,
            "cache_dir": str(tmp_path / "cache"),
            "synthetic": {"seed": 0, "num_train": 40, "num_validation": 4, "num_test": 4},
            **keys,
        }
    )
    return Seq2SeqDataModule(config, encoder_tokenizer=tok, decoder_tokenizer=tok, special_ids=ids, seed=seed)


def test_batches_are_padded_per_batch_and_truncation_is_counted(bert_tok, tmp_path):
    tok, ids = bert_tok
    dm = datamodule(tok, ids, tmp_path, max_target_length=3)
    batch = next(iter(dm.train_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) <= 8  # the batch's longest, not a fixed length
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()
    last = batch["input_ids"][range(4), lengths - 1]
    assert (last == tok.sep_token_id).all()  # truncated sources keep their closing [SEP]
    assert (batch["labels"] != -100).sum(1).max() <= 3
    assert (batch["labels"][batch["labels"] != -100].view(4, -1)[:, -1] == tok.sep_token_id).all()  # EOS kept
    assert batch["num_target_tokens"] == int((batch["labels"] != -100).sum())
    stats = dm.split("train").stats
    assert (
        stats.truncated_sources == 40 and stats.truncated_targets == 40
    )  # every source > 6, target > 2 words
    # evaluation batches come longest first and carry their index so predictions can be put back in order
    test = next(iter(dm.test_dataloader()))
    assert test["attention_mask"].sum(1).tolist() == sorted(
        test["attention_mask"].sum(1).tolist(), reverse=True
    )
    assert sorted(test["index"].tolist()) == [0, 1, 2, 3]


def test_tokenization_cache_hits_on_the_second_run_and_keys_on_lengths(bert_tok, tmp_path, caplog):
    tok, ids = bert_tok
    with caplog.at_level(logging.INFO):
        first = datamodule(tok, ids, tmp_path).split("validation")
    assert "tokenization cache miss" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = datamodule(tok, ids, tmp_path).split("validation")
    assert "tokenization cache hit" in caplog.text and "miss" not in caplog.text
    assert [list(again.source(i)) for i in range(4)] == [list(first.source(i)) for i in range(4)]
    assert again.targets == first.targets and again.sources == first.sources
    caplog.clear()
    with caplog.at_level(logging.INFO):
        datamodule(tok, ids, tmp_path, max_source_length=16).split("validation")
    assert "tokenization cache miss" in caplog.text
    entries = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("t-validation-")]
    assert len(entries) == 2


def test_cache_notices_a_changed_file(bert_tok, tmp_path):
    tok, ids = bert_tok
    data = tmp_path / "d"
    write_split(data, "train", [{"source": "a b", "target": "a"}])
    dm = datamodule(tok, ids, tmp_path, loader="jsonl", path=str(data))
    assert len(dm.split("train")) == 1
    write_split(data, "train", [{"source": "a b", "target": "a"}, {"source": "c d", "target": "c"}])
    assert len(datamodule(tok, ids, tmp_path, loader="jsonl", path=str(data)).split("train")) == 2


def test_limits_take_the_first_examples(bert_tok, tmp_path):
    tok, ids = bert_tok
    dm = datamodule(tok, ids, tmp_path, limit_train=10, limit_eval=2)
    assert len(dm.split("train")) == 10 and len(dm.split("test")) == 2


def test_bucketed_batches_cover_every_example_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=1, pool_batches=20)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler)

    def padding(bs):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in map(np.asarray, bs))

    random_batches = np.array_split(rng.permutation(1000), len(batches))
    assert padding(batches) < 0.2 * padding(random_batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled every epoch
    sampler.set_epoch(0)
    assert list(sampler) == batches  # and reproducible


def test_bucketed_batches_also_sort_targets_when_sources_are_all_truncated():
    """CNN/DailyMail: three quarters of the articles fill the 512-token limit; their summaries still vary."""
    rng = np.random.default_rng(0)
    sources = np.full(800, 512)
    targets = rng.integers(20, 128, size=800)
    batches = list(BucketBatchSampler(sources, 4, seed=1, pool_batches=50, target_lengths=targets))
    assert sorted(i for b in batches for i in b) == list(range(800))

    def target_padding(bs):
        return sum(len(b) * targets[b].max() - targets[b].sum() for b in map(np.asarray, bs))

    source_only = list(BucketBatchSampler(sources, 4, seed=1, pool_batches=50))
    assert target_padding(batches) < 0.1 * target_padding(source_only)


def test_train_fraction_is_a_seeded_random_subset_the_same_for_every_run_seed(bert_tok, tmp_path):
    tok, ids = bert_tok

    def train_ids(**kwargs) -> list[list[int]]:
        split = datamodule(tok, ids, tmp_path, **kwargs).split("train")
        return [list(split.source(i)) for i in range(len(split))]

    whole = train_ids()
    quarter = train_ids(train_fraction=0.25, seed=1)
    assert len(whole) == 40 and len(quarter) == 10
    assert quarter != whole[:10]  # random, not the first N (that is limit_train)
    positions = [whole.index(x) for x in quarter]
    assert positions == sorted(positions)  # kept in the split's order
    assert train_ids(train_fraction=0.25, seed=7) == quarter  # the run's seed does not change the subset
    assert train_ids(train_fraction=0.25, subset_seed=3) != quarter
    assert len(train_ids(train_fraction=0.01)) == 1  # at least one example


def test_validation_size_bounds_validation_and_leaves_test_whole(bert_tok, tmp_path):
    tok, ids = bert_tok
    full = datamodule(
        tok, ids, tmp_path, synthetic={"seed": 0, "num_train": 8, "num_validation": 20, "num_test": 20}
    )
    small = datamodule(
        tok,
        ids,
        tmp_path,
        validation_size=5,
        synthetic={"seed": 0, "num_train": 8, "num_validation": 20, "num_test": 20},
    )
    assert len(small.split("validation")) == 5 and len(small.split("test")) == 20
    assert set(small.split("validation").sources) < set(full.split("validation").sources)
    assert small.split("validation").stats.extra["random_subset"] == {"of": 20, "kept": 5, "seed": 0}
    assert len(datamodule(tok, ids, tmp_path, validation_size=100).split("validation")) == 4  # all there is


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [("train_fraction", 1.5, "data.train_fraction=1.5"), ("validation_size", 0, "data.validation_size=0")],
)
def test_bad_subset_sizes_name_the_key_and_the_fix(bert_tok, tmp_path, key, value, needle):
    tok, ids = bert_tok
    with pytest.raises(UserError, match=needle.replace(".", r"\.") + ".*Fix"):
        dm = datamodule(tok, ids, tmp_path, **{key: value})
        dm.prepare()


def test_a_1mb_document_is_truncated_and_counted(tiny, tmp_path):

    data = tmp_path / "data"
    data.mkdir()
    long_doc = ("the violin and then the tiger . " * 40000)[:1_000_000]
    for split in ("train", "validation", "test"):
        rows = [
            {"source": long_doc, "target": "instrument then animal"},
            {"source": "a dog .", "target": "animal"},
        ]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = load_tokenizer(tiny["bert"])
    ids = bert_special_ids(tok)
    config = data_config(
        dict(
            name="big",
            loader="jsonl",
            path=str(data),
            max_source_length=64,
            max_target_length=8,
            cache_dir=str(tmp_path / "cache"),
        )
    )
    dm = Seq2SeqDataModule(config, encoder_tokenizer=tok, decoder_tokenizer=tok, special_ids=ids)
    split = dm.split("train")
    assert len(split.source(0)) == 64 and split.stats.truncated_sources == 1


def test_every_epoch_of_a_real_fit_draws_its_own_order(tiny, tmp_path):
    """Lightning calls `set_epoch` on a DataLoader's sampler and its batch sampler's `sampler`: the bucketing batch
    sampler must be reachable there, or every epoch repeats epoch 0's order (and a run resumed after its first
    epoch would not skip what it trained on; the kill-and-resume test, tests/test_train_faults.py, kills one there)."""
    from src.config.schema import train_config
    from src.train import train
    from tests.helpers.commands import compose_train
    from tests.helpers.tiny_run import tiny_models, tiny_run

    seen: dict[int, list[list[int]]] = {}
    cfg = compose_train(
        *tiny_models(tiny),
        *tiny_run(steps=12, val_every=100, warmup=1, train=16, validation=4, test=4, batch=4),
        "+callbacks.orders._target_=tests.test_data.OrdersOf",
        f"output_dir={tmp_path / 'run'}",
    )
    OrdersOf.seen = seen
    assert train(train_config(cfg)).completed
    assert sorted(seen) == [0, 1, 2]  # 4 batches an epoch, 12 steps
    for epoch in (1, 2):
        assert sorted(sum(seen[epoch], [])) == sorted(sum(seen[0], []))  # every example once an epoch
    assert seen[0] != seen[1] != seen[2] != seen[0]  # each epoch in an order of its own


class OrdersOf(L.Callback):
    """A callback the test above adds from the command line: the batches' example indices of each epoch."""

    seen: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        OrdersOf.seen.setdefault(trainer.current_epoch, []).append(batch["index"].tolist())
