"""src/run/record.py: one schema for what train and eval write, and the older layouts still read."""

from __future__ import annotations

import json

from src.analysis.decoding import decoding_results
from src.run.record import EVALUATED_SPLITS, completed, read_metrics


def write(run, metrics: dict):
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_a_train_run_of_the_earlier_layout_reads_its_validation_scores_under_validation(tmp_path):
    run = write(
        tmp_path / "old-train", {"status": "completed", "val": {"loss": 1.5}, "test": {"rouge2": 12.0}}
    )
    metrics = completed(run)
    assert (
        metrics["validation"] == {"loss": 1.5}
        and metrics["test"] == {"rouge2": 12.0}
        and "val" not in metrics
    )


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
    assert {s: metrics[s] for s in EVALUATED_SPLITS} == {
        "validation": {"rouge2": 9.0},
        "test": {"rouge2": 10.0},
    }
    assert "metrics" not in metrics and "splits" not in metrics
    assert metrics["decoding"] == {"num_beams": 1} and "generation" not in metrics  # the decoding's old name
    only = write(
        tmp_path / "sweep" / "1_num_beams=4", {"generation": {"num_beams": 4}, "metrics": {"rouge2": 11.0}}
    )
    assert read_metrics(only)["test"] == {"rouge2": 11.0}  # `split` absent: the test split, as eval wrote it
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
