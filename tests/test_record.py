"""src/run/run_record.py: one typed record for what train and eval write, and the older layouts still read."""

from __future__ import annotations

import json

from src.analysis.decoding import decoding_results
from src.run.record import completed, read_metrics
from src.run.run_record import EVALUATED_SPLITS, SCHEMA_VERSION, RunRecord


def write(run, metrics: dict):
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_a_train_run_of_the_earlier_layout_reads_its_validation_scores_under_validation(tmp_path):
    run = write(
        tmp_path / "old-train", {"status": "completed", "val": {"loss": 1.5}, "test": {"rouge2": 12.0}}
    )
    metrics = completed(run)
    assert metrics.validation == {"loss": 1.5} and metrics.test == {"rouge2": 12.0}
    assert "val" not in metrics.as_dict() and metrics.schema_version == SCHEMA_VERSION


def test_an_eval_directory_of_the_earlier_layout_reads_as_each_splits_key(tmp_path):
    both = write(
        tmp_path / "sweep" / "0_num_beams=1",
        {
            "generation": {"num_beams": 1},
            "split": "test",
            "metrics": {"rouge2": 10.0},
            "splits": {"validation": {"rouge2": 9.0}, "test": {"rouge2": 10.0}},
        },
    )
    metrics = read_metrics(both)
    assert {s: metrics.scores(s) for s in EVALUATED_SPLITS} == {
        "validation": {"rouge2": 9.0},
        "test": {"rouge2": 10.0},
    }
    assert not {"metrics", "splits", "generation"} & set(metrics.as_dict())
    assert metrics.decoding == {"num_beams": 1}  # under the decoding's old name
    assert metrics.command == "eval" and metrics.extra == {}
    only = write(
        tmp_path / "sweep" / "1_num_beams=4", {"generation": {"num_beams": 4}, "metrics": {"rouge2": 11.0}}
    )
    assert read_metrics(only).test == {"rouge2": 11.0}  # `split` absent: the test split, as eval wrote it
    # the decoding table reads both through the same reader
    rows = decoding_results(tmp_path / "sweep")
    assert [r["splits"] for r in rows] == [
        {"validation": {"rouge2": 9.0}, "test": {"rouge2": 10.0}},
        {"test": {"rouge2": 11.0}},
    ]


def test_a_directory_without_a_readable_record_is_none_and_not_completed(tmp_path):
    assert read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text("{ half written")
    assert read_metrics(tmp_path) is None and completed(tmp_path) is None
    write(tmp_path / "running", {"status": "running"})
    assert completed(tmp_path / "running") is None


def test_a_record_writes_and_reads_back_the_same_and_keeps_keys_it_does_not_know(tmp_path):
    record = RunRecord(status="completed", run_name="r-s1", encoder="bert", seed=1, test={"bleu": 30.0})
    written = record.as_dict()
    assert written["variant"] is None and "validation" not in written  # identity always; other nulls left out
    assert written["schema_version"] == SCHEMA_VERSION
    later = {**written, "ema": {"bleu": 30.5}}  # a key of a later layout
    back = RunRecord.from_dict(later)
    assert back.test == {"bleu": 30.0} and back.extra == {"ema": {"bleu": 30.5}}
    assert back.as_dict() == later  # read and written again, nothing lost


def test_an_eval_record_of_the_earlier_layout_keeps_its_outputs_under_its_split(tmp_path):
    old = {"ckpt_path": "/r/best.ckpt", "split": "validation", "outputs": {"distinct": 0.9}, "validation": {}}
    assert RunRecord.from_dict(old).outputs == {"validation": {"distinct": 0.9}}


def test_the_docs_name_every_key_of_the_record():
    from dataclasses import fields

    from tests.helpers.commands import REPO

    table = (REPO / "docs" / "reliability.md").read_text().split("**`metrics.json`: the run record.**")[1]
    missing = [f.name for f in fields(RunRecord) if f.name != "extra" and f"`{f.name}`" not in table]
    assert not missing, f"docs/reliability.md's record table lacks {missing}"


def test_a_record_says_which_checkpoint_and_weights_its_scores_are_of():
    ema = {"kind": "ema", "decay": 0.999, "start_step": 0}
    chosen = {"monitor": "val/rouge2", "mode": "max"}
    best = RunRecord(
        status="completed", test_checkpoint="checkpoints/best.ckpt", selection=chosen, weights=ema
    )
    assert best.tested() == "best val/rouge2, EMA 0.999"
    last = RunRecord(status="completed", test_checkpoint="checkpoints/last.ckpt", weights={"kind": "trained"})
    assert last.tested() == "last"
    evaluated = RunRecord(
        status="completed", command="eval", ckpt_path="/r/checkpoints/best.ckpt", weights=ema
    )
    assert evaluated.tested() == "best.ckpt, EMA 0.999"
    mean = {"kind": "average", "checkpoints": 3, "steps": [4, 6, 8]}
    averaged = RunRecord(status="completed", test_checkpoint="checkpoints/average.ckpt", weights=mean)
    assert averaged.tested() == "average of 3"
    again = RunRecord(
        status="completed", command="eval", ckpt_path="/r/checkpoints/average-2.ckpt", weights=mean
    )
    assert again.tested() == "average-2.ckpt, average of 3"
    assert RunRecord(status="completed").tested() is None  # an older record: unknown, not guessed


def test_the_report_shows_which_checkpoint_and_weights_each_row_is(tmp_path):
    from src.analysis.report import write_report

    for name, extra in (
        ("plain", {"test_checkpoint": "checkpoints/best.ckpt", "selection": {"monitor": "val/loss"}}),
        ("ema", {"test_checkpoint": "checkpoints/last.ckpt", "weights": {"kind": "ema", "decay": 0.99}}),
        (
            "mean",
            {"test_checkpoint": "checkpoints/average.ckpt", "weights": {"kind": "average", "checkpoints": 5}},
        ),
    ):
        record = {
            "status": "completed",
            "run_name": name,
            "variant": name,
            "data": "xsum",
            "seed": 1,
            **extra,
        }
        write(tmp_path / name, {**record, "test": {"rouge2": 10.0, "loss": 2.0}})
    report = write_report(tmp_path, tmp_path / "out", resamples=10)
    assert {r["variant"]: r["tested"] for r in report["rows"]} == {
        "plain": "best val/loss",
        "ema": "last, EMA 0.99",
        "mean": "average of 5",
    }
    assert "| last, EMA 0.99 |" in (tmp_path / "out" / "report.md").read_text()
