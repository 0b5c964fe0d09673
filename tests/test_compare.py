"""src.compare: hand-made runs scored example by example, and two trained runs of a tiny sweep (W&B offline)."""

from __future__ import annotations

import json

import pytest

from src.analysis.compare import compare, load_side
from src.analysis.compare_page import marked, to_html
from src.metrics.text import GenerationMetrics
from src.system.errors import UserError
from tests.helpers.commands import run_cli
from tests.helpers.runs import A_PRED, B_PRED, REFS, SOURCES, run_dirs, write_run
from tests.helpers.wandb_reader import read_run, run_files


# ---- on hand-made runs -----------------------------------------------------------------------------------------
def test_compare_scores_each_example_sorts_by_gap_and_marks_differing_words(tmp_path):
    a_pred, b_pred = A_PRED, B_PRED
    a = load_side(str(write_run(tmp_path / "a", a_pred, REFS, SOURCES)))
    b = load_side(str(write_run(tmp_path / "b", b_pred, REFS, SOURCES)))
    result = compare(a, b, resamples=200)
    assert result["metric"] == "rouge2"  # the task's ROUGE-2 first
    assert (result["b_wins"], result["ties"], result["a_wins"]) == (3, 2, 1)
    gaps = [e["gap"] for e in result["examples"]]
    assert [abs(g) for g in gaps] == sorted((abs(g) for g in gaps), reverse=True)
    assert result["examples"][0]["index"] in (1, 2) and result["examples"][0]["gap"] == pytest.approx(100.0)
    # corpus ROUGE-2 of each side equals the split metric computed the usual way
    m = GenerationMetrics(["rouge2"])
    m.update(b_pred, REFS)
    assert result["corpus"]["b"] == pytest.approx(float(m.compute()["rouge2"]), abs=1e-4)
    assert marked(["fruit", "then", "animal"], ["fruit", "then", "fruit"], True, "html") == (
        "fruit then <mark>animal</mark>"
    )
    assert marked(["a", "b"], ["a", "b", "c"], False, "md") == "a b **c**"
    page = to_html(result, limit=10)
    assert page.count('<tr class="') == 6 and "<script" not in page


def test_compare_refuses_runs_of_different_examples(tmp_path):
    a = load_side(str(write_run(tmp_path / "a", REFS, REFS, SOURCES)))
    other = [*REFS[:-1], "something else"]
    b = load_side(str(write_run(tmp_path / "b", REFS, other, SOURCES)))
    with pytest.raises(UserError, match="example 6 differs"):
        compare(a, b)
    c = load_side(str(write_run(tmp_path / "c", REFS[:4], REFS[:4], SOURCES[:4])))
    with pytest.raises(UserError, match="not the same split"):
        compare(a, c)


# ---- on real runs: the seed sweep (conftest), two sharing schemes x two seeds -----------------------------------
def test_compare_two_trained_runs_writes_md_html_and_a_wandb_table(seed_sweep, tmp_path):
    runs = run_dirs(seed_sweep)
    out = tmp_path / "cmp"
    proc = run_cli("src.compare", str(runs[("embeddings", 1)]), str(runs[("shared", 1)]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "paired-bootstrap interval" in proc.stdout
    result = json.loads((out / "compare.json").read_text())
    assert result["examples_count"] == 12 and result["bootstrap"]["resamples"] == 1000
    # both runs are bert2bert-synthetic-s1 (they differ in sharing): named by their directories
    a_dir, b_dir = runs[("embeddings", 1)].name, runs[("shared", 1)].name
    assert (out / "compare.md").read_text().startswith(f"# {a_dir} (A) vs {b_dir} (B)")
    # and which checkpoint and weights each side's predictions are of
    assert result["a"]["tested"] == result["b"]["tested"] == "best val/loss"
    assert f"{result['a']['label']} (best val/loss)" in (out / "compare.md").read_text()
    assert 'id="examples"' in (out / "compare.html").read_text()
    (path,) = run_files(out)  # the runs used W&B (offline): so does the comparison
    run = read_run(path)
    assert run.job_type == "compare" and run.group == "seeds"
    assert any(k.startswith("compare/examples") for k in run.history_keys)
    assert run.summary["compare/delta"] == pytest.approx(result["bootstrap"]["delta"])
