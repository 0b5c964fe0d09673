"""src.report: seeds grouped into mean and std with bootstrap intervals on the seed sweep (conftest), the paper's
figures beside the paper's tasks and the gaps to them, and what was scored."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from src.analysis.report import build_rows, scoring_lines, write_report
from src.metrics.text import ExampleScorer
from src.paper.figures import paper_figures
from tests.helpers.runs import run_dirs


def test_report_groups_seeds_into_mean_std_and_adds_bootstrap_intervals(seed_sweep, tmp_path):
    runs = run_dirs(seed_sweep)
    assert len(runs) == 4
    report = write_report(seed_sweep, tmp_path, resamples=300)
    rows = report["rows"]
    assert len(rows) == 2 and [r["seeds"] for r in rows] == ["1,2", "1,2"]
    # two groups that differ only in sharing: the label says so (both are bert2bert)
    assert {r["variant"] for r in rows} == {
        "bert2bert-synthetic (sharing=embeddings)",
        "bert2bert-synthetic (sharing=shared)",
    }
    for row in rows:
        mode = "shared" if "shared)" in row["variant"] else "embeddings"
        values = [
            json.loads((runs[(mode, s)] / "metrics.json").read_text())["test"]["rouge2"] for s in (1, 2)
        ]
        assert row["rouge2"] == pytest.approx(statistics.fmean(values))
        assert row["rouge2 std"] == pytest.approx(statistics.stdev(values))
    ci_col = next(c for c in report["columns"] if "(95% CI)" in c)
    base, other = rows
    assert base[ci_col] is None and other[ci_col] is not None
    iv = other[ci_col]
    assert iv.delta == pytest.approx(other["rouge2"] - base["rouge2"], abs=1e-3)  # from predictions.jsonl
    assert iv.low <= iv.delta <= iv.high
    md = (tmp_path / "report.md").read_text()
    assert "±" in md and ci_col in md
    # what was scored: the canonical text and ROUGE's stemming, as the runs' metrics.json recorded them
    recorded = json.loads((runs[("shared", 1)] / "metrics.json").read_text())["scoring"]
    assert recorded["scored_text"] == "canonical" and recorded["provenance"]["rouge2"]["signature"] in md
    assert "- `rouge2`: ROUGE-2 F1" in md and "canonical text" in md
    with open(tmp_path / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert {"rouge2 std", f"{ci_col} low", f"{ci_col} high"} <= set(table[0])
    flipped = write_report(seed_sweep, tmp_path / "flipped", baseline=other["variant"], resamples=300)
    assert flipped["rows"][0][f"rouge2 vs {other['variant']} (95% CI)"].delta == pytest.approx(
        -iv.delta, abs=1e-6
    )


def test_report_shows_the_paper_figures_for_the_papers_tasks(tmp_path):
    for variant, rouge2 in (("bert2bert", 17.0), ("rnd2rnd", 12.5)):
        run = tmp_path / f"{variant}-cnn_dailymail-s1"
        run.mkdir()
        (run / "metrics.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "variant": variant,
                    "data": "cnn_dailymail",
                    "seed": 1,
                    "test": {
                        "rouge1": 30.0,
                        "rouge2": rouge2,
                        "rougeL": 28.0,
                        "rougeLsum": 31.0,
                        "loss": 2.0,
                    },
                    "params": {"total": 221_000_000, "from_checkpoint": 195_000_000, "random": 26_000_000},
                    "train": {"steps": 10, "wall_time_s": 3.0, "samples_per_s": 5.0},
                }
            )
        )
    report = write_report(tmp_path, tmp_path / "out")
    rows = {r["variant"]: r for r in report["rows"]}
    assert [r["variant"] for r in report["rows"]] == ["rnd2rnd", "bert2bert"]  # the paper's order
    assert rows["bert2bert"]["paper rouge2"] == 17.84 and rows["rnd2rnd"]["paper rouge2"] == 14.00
    assert rows["bert2bert"]["params (M)"] == pytest.approx(221.0)
    # the paper's CNN/DailyMail R-L is summary-level: it stands beside ROUGE-Lsum, not sentence-level ROUGE-L
    assert rows["bert2bert"]["paper rougeLsum"] == 36.29 and rows["bert2bert"]["paper rougeL"] is None
    assert "paper rouge2" in (tmp_path / "out" / "report.md").read_text()
    # the gap to the paper's figure, flagged beyond the stated tolerance (1.0 point by default)
    gap = "gap to paper (rouge2)"
    assert rows["bert2bert"][gap] == pytest.approx(17.0 - 17.84) and not rows["bert2bert"]["gap flagged"]
    assert rows["rnd2rnd"][gap] == pytest.approx(12.5 - 14.00) and rows["rnd2rnd"]["gap flagged"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| -1.50 ⚠ |" in md and "| -0.84 |" in md and "⚠ beyond ±1." in md
    loose = write_report(tmp_path, tmp_path / "loose", tolerance=2.0)
    assert not any(r["gap flagged"] for r in loose["rows"])


def test_the_report_compares_wmt_runs_with_the_paper_in_t2t_bleu():
    paper = paper_figures()
    run = {
        "data": "wmt14_de_en",
        "variant": "bert2bert",
        "run_name": "bert2bert-wmt14_de_en-s1",
        "test": {"bleu": 31.0, "bleu_t2t": 32.0, "loss": 1.0},
        "status": "completed",
        "seed": 1,
        "dir": "run",
        "path": "/nonexistent",
        "overrides": None,
    }
    columns, rows = build_rows([run], paper, resamples=10)
    assert "gap to paper (bleu_t2t)" in columns and rows[0]["paper bleu_t2t"] == 32.7
    assert rows[0]["gap to paper (bleu_t2t)"] == pytest.approx(32.0 - 32.7)
    # the report says how its beam search normalised lengths: transformers' unless the run recorded GNMT's
    assert "log-probability / length^alpha" in "".join(scoring_lines([run]))
    assert "GNMT" not in "".join(scoring_lines([{**run, "data": "xsum"}]))
    gnmt = {**run, "decoding": {"num_beams": 4, "length_penalty": 0.6, "length_penalty_form": "gnmt"}}
    penalty = [line for line in scoring_lines([gnmt]) if "length penalty" in line]
    assert len(penalty) == 1 and "((5 + length) / 6)^alpha, as the paper's" in penalty[0]
    # each BLEU column named: which tool, which text, which signature
    provenance = ExampleScorer(["bleu", "bleu_t2t", "sacrebleu"], bleu_lowercase=True).provenance()
    lines = scoring_lines([{**run, "scoring": {"provenance": provenance}}])
    lines = {line.split("`")[1]: line for line in lines if line.startswith("- `")}
    assert "canonical text" in lines["bleu"] and "tok:13a" in lines["bleu"] and "case:lc" in lines["bleu"]
    assert "canonical text" in lines["bleu_t2t"] and "tok:intl" in lines["bleu_t2t"]
    assert lines["sacrebleu"].startswith("- `sacrebleu`: standard sacreBLEU")
    assert "as_given text" in lines["sacrebleu"] and "case:mixed" in lines["sacrebleu"]
    # a run from before the canonical form recorded nothing: it was scored as given, and the report says so
    assert scoring_lines([run])[0] == "- `text`: `as_given (unrecorded: an older run)`"
