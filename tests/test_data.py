"""Data: the synthetic task's properties, JSONL loading and its errors, per-batch padding."""

from __future__ import annotations

import json

import pytest

from src.data.datamodule import Seq2SeqDataModule, load_split
from src.data.synthetic import CATEGORIES, make_synthetic, split_vocabulary
from src.errors import UserError
from src.models.checkpoints import load_tokenizer

SIZES = {"train": 500, "validation": 50, "test": 50}


def test_synthetic_is_seeded_and_tests_only_held_out_words():
    a, b = make_synthetic(SIZES, seed=3), make_synthetic(SIZES, seed=3)
    assert a == b
    assert make_synthetic(SIZES, seed=4)["train"] != a["train"]
    vocab = split_vocabulary(3)
    seen = {w for words in vocab["train"].values() for w in words}
    held = {w for words in vocab["test"].values() for w in words}
    assert seen.isdisjoint(held)
    assert len(held) == sum(4 for _ in CATEGORIES)  # a third of 12 words per category
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


def test_jsonl_columns_and_dropped_rows(tmp_path, caplog):
    rows = [
        {"article": "a b c", "highlights": "a"},
        {"article": "", "highlights": "x"},
        {"article": 3, "highlights": "y"},
        {"article": "d e", "highlights": "d"},
    ]
    write_split(tmp_path, "train", rows)
    with caplog.at_level("WARNING"):
        got = load_split(
            "jsonl",
            "train",
            path=str(tmp_path),
            source_column="article",
            target_column="highlights",
            synthetic=None,
        )
    assert got == [("a b c", "a"), ("d e", "d")]
    assert "dropped 2 rows" in caplog.text


def test_jsonl_missing_column_lists_the_columns_it_has(tmp_path):
    write_split(tmp_path, "train", [{"document": "x", "summary": "y"}])
    with pytest.raises(UserError, match=r"no column 'source' \(columns: document, summary\)"):
        load_split(
            "jsonl",
            "train",
            path=str(tmp_path),
            source_column="source",
            target_column="summary",
            synthetic=None,
        )


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"source": "a", "target": "b"}\n{"source": oops\n')
    with pytest.raises(UserError, match=r"train.jsonl line 2 is not valid JSON"):
        load_split(
            "jsonl",
            "train",
            path=str(tmp_path),
            source_column="source",
            target_column="target",
            synthetic=None,
        )


def test_empty_split_and_missing_file(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(UserError, match="the train split is empty"):
        load_split(
            "jsonl",
            "train",
            path=str(tmp_path),
            source_column="source",
            target_column="target",
            synthetic=None,
        )
    with pytest.raises(UserError, match=r"missing data file .*test.jsonl \(found: train.jsonl\)"):
        load_split(
            "jsonl",
            "test",
            path=str(tmp_path),
            source_column="source",
            target_column="target",
            synthetic=None,
        )


def test_batches_are_padded_per_batch_and_truncated(tiny):
    tok = load_tokenizer(tiny["bert"])
    ids = {
        "decoder_start_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    dm = Seq2SeqDataModule(
        loader="synthetic",
        encoder_tokenizer=tok,
        decoder_tokenizer=tok,
        special_ids=ids,
        max_source_length=8,
        max_target_length=4,
        batch_size=4,
        synthetic={"seed": 0, "num_train": 8, "num_validation": 4, "num_test": 4},
    )
    batch = next(iter(dm.train_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) <= 8  # padded to the batch's longest, not to 64
    assert (batch["labels"] != -100).sum(1).max() <= 4
    assert batch["num_target_tokens"] == int((batch["labels"] != -100).sum())
    # evaluation batches come longest first and carry their index so predictions can be put back in order
    test = next(iter(dm.test_dataloader()))
    assert test["attention_mask"].sum(1).tolist() == sorted(
        test["attention_mask"].sum(1).tolist(), reverse=True
    )
    assert sorted(test["index"].tolist()) == [0, 1, 2, 3]
