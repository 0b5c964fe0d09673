"""Analysis on top of run directories: the paired bootstrap, src.compare, decoding sweeps in src.eval, seeds in
src.report, and src.plan, on real runs of a tiny sweep (two sharing schemes x two seeds, W&B offline)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from omegaconf import OmegaConf
from scipy.stats import binom

from src.analysis.compare import compare, load_side
from src.analysis.compare_page import marked, to_html
from src.analysis.plan import plan, render, validations
from src.analysis.probe import MemoryMeter, fit_line, largest_batch, probe_config
from src.analysis.report import build_rows, scoring_lines, write_report
from src.analysis.sweep import Job, job_devices
from src.metrics.significance import paired_bootstrap
from src.metrics.text import ExampleScorer, GenerationMetrics
from src.paper.figures import paper_figures
from src.system.errors import UserError
from tests.conftest import compose_train, run_cli, synthetic_overrides
from tests.wandb_reader import read_run, run_files

TINY = [
    *synthetic_overrides(train=48, validation=8, test=12, batch=8, eval_batch=8, new_tokens=4, beams=1),
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "progress=plain",
    "logger=wandb",
    "logger.mode=offline",
]


# ---- the paired bootstrap: cases with a known answer ----------------------------------------------------------
def mean_stats(scores) -> np.ndarray:
    """Per-example statistics of a mean metric (exact, ROUGE): one column, the sentence score in [0, 1]."""
    return np.asarray(scores, dtype=float)[:, None]


def test_bootstrap_of_identical_runs_is_exactly_zero():
    a = mean_stats(np.linspace(0, 1, 50))
    iv = paired_bootstrap("rouge2", a, a.copy())
    assert (iv.delta, iv.low, iv.high, iv.p_value) == (0.0, 0.0, 0.0, 1.0) and not iv.significant


def test_bootstrap_of_a_constant_per_example_gain_is_that_gain():
    a = mean_stats(np.random.default_rng(1).uniform(0, 0.8, 200))
    iv = paired_bootstrap("rouge2", a, a + 0.1)  # B is 10 points better on every single example
    assert iv.delta == pytest.approx(10.0)
    assert iv.low == pytest.approx(10.0) and iv.high == pytest.approx(10.0)
    assert iv.significant and iv.p_value == 0.0


def test_bootstrap_interval_matches_the_binomial_answer():
    # B is right on 30 of 100 examples where A is wrong, equal elsewhere: resampled, the gain is 100/n x a
    # Binomial(100, 0.3) count, whose 2.5% and 97.5% quantiles are known exactly
    a = mean_stats(np.zeros(100))
    b = mean_stats(np.r_[np.ones(30), np.zeros(70)])
    iv = paired_bootstrap("exact", a, b, resamples=2000, seed=3)
    low, high = binom.ppf([0.025, 0.975], 100, 0.3)
    assert iv.delta == pytest.approx(30.0)
    assert abs(iv.low - low) <= 1.0 and abs(iv.high - high) <= 1.0
    again = paired_bootstrap("exact", a, b, resamples=2000, seed=3)
    assert (again.low, again.high) == (iv.low, iv.high)  # seeded


def test_bootstrap_resamples_corpus_bleu_and_averages_seeds():
    scorer = ExampleScorer(["bleu"])
    refs = [
        "the cat sat on the mat",
        "a dog ran in the park",
        "birds fly over the sea",
        "it rains all day long",
    ]
    a = ["the cat sat on a mat", "a dog ran", "birds fly over the sea", "it rains"]
    b = ["the cat sat on the mat", "a dog ran in the park", "birds fly high", "it rains all day"]
    sa, sb = scorer.statistics(a, refs)["bleu"], scorer.statistics(b, refs)["bleu"]
    corpus = {}
    for name, preds in (("a", a), ("b", b)):
        m = GenerationMetrics(["bleu"])
        m.update(preds, refs)
        corpus[name] = float(m.compute()["bleu"])
    iv = paired_bootstrap("bleu", sa, sb, resamples=200)
    assert iv.delta == pytest.approx(
        corpus["b"] - corpus["a"], abs=1e-4
    )  # corpus BLEU, not a mean of sentences
    seeds = paired_bootstrap("bleu", [sa, sa], [sb, sa], resamples=200)  # B's seeds: b and a -> half the gap
    assert seeds.delta == pytest.approx(iv.delta / 2, abs=1e-4)
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap("bleu", sa, sb[:3])


# ---- src.compare on hand-made runs -----------------------------------------------------------------------------
def write_run(path: Path, predictions: list[str], references: list[str], sources: list[str]) -> Path:
    path.mkdir(parents=True)
    rows = [
        {"source": s, "reference": r, "prediction": p}
        for s, r, p in zip(sources, references, predictions, strict=True)
    ]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "metrics.json").write_text(
        json.dumps(
            {"status": "completed", "run_name": path.name, "test": {"rouge1": 0, "rouge2": 0, "exact": 0}}
        )
    )
    return path


SOURCES = [f"source {i}" for i in range(6)]
# two systems on those six examples: B wins 3 (two by 100 points), ties 2, loses 1
A_PRED = ["fruit then animal", "fruit then vehicle", "fruit then country", "vehicle then animal", "a b", "x"]
B_PRED = [
    "fruit then fruit",
    "animal then vehicle",
    "country then fruit",
    "vehicle then animal",
    "a b c",
    "x",
]
REFS = [
    "fruit then animal",
    "animal then vehicle",
    "country then fruit",
    "vehicle then animal",
    "a b c",
    "x y z",
]


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


# ---- on real runs: a tiny sweep, two sharing schemes x two seeds -------------------------------------------------
@pytest.fixture(scope="session")
def seed_sweep(tiny, tmp_path_factory, worker_id) -> Path:
    """outputs of `src.train -m sharing=embeddings,shared seed=1,2` (4 tiny runs), made once for all workers."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root
    sweep = root / "seed_sweep"
    with FileLock(str(root / "seed_sweep.lock")):
        if not (sweep / "done").is_file():
            overrides = sweep_overrides(tiny, sweep)
            proc = run_cli("src.train", "-m", *overrides)
            assert proc.returncode == 0, proc.stderr[-3000:]
            (sweep / "done").write_text(json.dumps(overrides))  # the command, with this worker's checkpoints
    return sweep


def sweep_overrides(tiny, sweep: Path) -> list[str]:
    models = [f"encoder.checkpoint={tiny['bert']}", f"decoder.checkpoint={tiny['bert']}"]
    return [
        *models,
        "sharing=embeddings,shared",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
        "sweep_name=seeds",
        *TINY,
    ]


def run_dirs(sweep: Path) -> dict[tuple[str, int], Path]:
    """{(sharing, seed): run directory}."""
    out = {}
    for path in sweep.glob("*/metrics.json"):
        m = json.loads(path.read_text())
        out[(m["sharing"], m["seed"])] = path.parent
    return out


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
    assert recorded["scored_text"] == "canonical" and recorded["signature"]["rouge"] in md
    assert "- `text`: `canonical`" in md
    with open(tmp_path / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert {"rouge2 std", f"{ci_col} low", f"{ci_col} high"} <= set(table[0])
    flipped = write_report(seed_sweep, tmp_path / "flipped", baseline=other["variant"], resamples=300)
    assert flipped["rows"][0][f"rouge2 vs {other['variant']} (95% CI)"].delta == pytest.approx(
        -iv.delta, abs=1e-6
    )


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
    assert 'id="examples"' in (out / "compare.html").read_text()
    (path,) = run_files(out)  # the runs used W&B (offline): so does the comparison
    run = read_run(path)
    assert run.job_type == "compare" and run.group == "seeds"
    assert any(k.startswith("compare/examples") for k in run.history_keys)
    assert run.summary["compare/delta"] == pytest.approx(result["bootstrap"]["delta"])


def test_eval_sweeps_decoding_on_one_checkpoint_and_chooses_on_validation(seed_sweep, tmp_path):
    ckpt = run_dirs(seed_sweep)[("embeddings", 1)] / "checkpoints" / "last.ckpt"
    sweep = tmp_path / "decoding"
    proc = run_cli(
        "src.eval",
        "-m",
        f"ckpt_path={ckpt}",
        "data.generation.num_beams=1,2",
        "data.generation.no_repeat_ngram_size=2",
        f"hydra.sweep.dir={sweep}",
        "logger=none",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [r["generation"]["num_beams"] for r in results] == [1, 2]
    assert all(r["generation"]["no_repeat_ngram_size"] == 2 for r in results)
    assert all({"validation", "test"} <= set(r) and r["split"] == "test" for r in results)
    with open(sweep / "decoding.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [r["num_beams"] for r in rows] == ["1", "2"]
    val = [r["validation"]["rouge2"] for r in results]
    best = max(range(2), key=lambda i: val[i])  # ties: the first (cheaper) setting
    assert [r["best"] for r in rows] == [str(i == best) for i in range(2)]
    assert "Best on validation rouge2: num_beams=" in (sweep / "decoding.md").read_text()
    # two settings' directories compare like two runs (the metric from their metrics.json)
    dirs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    diff = compare(load_side(str(dirs[0])), load_side(str(dirs[1])), resamples=100)
    assert diff["metric"] == "rouge2"
    assert diff["corpus"]["b"] == pytest.approx(results[1]["test"]["rouge2"], abs=1e-3)


def test_plan_lists_jobs_states_budgets_and_estimates_from_a_probe(seed_sweep, tmp_path):
    extra = tmp_path / "plan.json"
    # the same sweep plus a third seed: four jobs completed, two new
    command = json.loads((seed_sweep / "done").read_text())
    overrides = [o if o != "seed=1,2" else "seed=1,2,3" for o in command]
    proc = run_cli("src.plan", *overrides, "--probe-steps", "2", "--json", str(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(extra.read_text())
    states = sorted(j["state"] for j in plan["jobs"])
    assert states == ["completed"] * 4 + ["new"] * 2
    done = {str(p) for p in run_dirs(seed_sweep).values()}
    assert {
        j["run_dir"] for j in plan["jobs"] if j["state"] == "completed"
    } == done  # the sweep's own directories
    assert all(j["params"]["total"] > 0 for j in plan["jobs"])
    shared = [j for j in plan["jobs"] if "sharing=shared" in j["overrides"]]
    untied = [j for j in plan["jobs"] if "sharing=embeddings" in j["overrides"]]
    assert shared[0]["params"]["total"] < untied[0]["params"]["total"]
    new = [j for j in plan["jobs"] if j["state"] == "new"]
    assert all(j["estimate_s"] > 0 for j in new)
    assert plan["total_s"] == pytest.approx(sum(j["estimate_s"] for j in new))
    assert all(j["estimate_s"] is None for j in plan["jobs"] if j["state"] == "completed")
    (probe,) = plan["probes"]
    assert probe["memory"]["train_peak_gib"] > 0 and probe["memory"]["largest_batch"] >= 8
    assert "device-hours" in proc.stdout and "largest batch that fits" in proc.stdout
    assert not any(seed_sweep.glob("*-s3-*")), "the plan ran a job"


# ---- the plan's arithmetic, each answer forced -------------------------------------------------------------------
def test_memory_fit_names_the_largest_batch_or_says_it_does_not_fit():
    gib = 1024**3
    fixed, per = fit_line(8, 3.0 * gib, 16, 5.0 * gib)  # 0.25 GiB an example on top of 1 GiB
    assert fixed == pytest.approx(1.0 * gib) and per == pytest.approx(0.25 * gib)
    assert largest_batch(fixed, per, capacity=10 * gib) == 32  # 0.9 x 10 GiB - 1 GiB = 8 GiB -> 32 examples
    assert largest_batch(fixed, per, capacity=1 * gib) == 0  # the model alone does not fit
    assert fit_line(16, 5.0 * gib, 16, 5.0 * gib) == (5.0 * gib, 0.0)


def test_a_ddp_job_is_probed_as_one_device_at_its_per_device_batch(tmp_path):
    cfg = compose_train(
        "trainer=ddp", "trainer.devices=2", "data.global_batch_size=32", "data.batch_size=null"
    )
    job = Job(overrides=[], cfg=cfg, run_dir=tmp_path)
    assert job_devices(cfg) == 2
    probe = probe_config(job, str(tmp_path))
    assert probe.data.batch_size == 16 and probe.data.global_batch_size is None
    assert (probe.trainer.devices, probe.trainer.strategy, probe.trainer.num_nodes) == (1, "auto", 1)
    assert job_devices(compose_train("trainer.devices=auto")) == 1


def test_validations_follow_the_trainers_interval():

    cfg = OmegaConf.create({"trainer": {"val_check_interval": 100}})
    assert validations(cfg, 300) == 3
    cfg.trainer.val_check_interval = 0.5  # half an epoch of 40 batches
    assert validations(cfg, 300, train_batches=40) == 15
    cfg.trainer.val_check_interval = None
    assert validations(cfg, 300) == 0


def test_cpu_memory_meter_sees_a_new_peak_and_resets():
    meter = MemoryMeter("cpu")
    meter.reset()
    before = meter.peak()
    block = np.ones(64 * 1024**2 // 8)  # 64 MiB touched
    assert meter.peak() >= before + 60 * 1024**2
    del block
    meter.reset()
    assert meter.peak() < before + 60 * 1024**2 or meter.current() >= before + 60 * 1024**2
    assert meter.capacity() > meter.current()


def test_plan_expands_the_papers_grid_from_the_experiments_sweeper_params_without_downloads():
    result = plan(["experiment=rothe_grid", "data=wmt14_en_de"], run_probe=False)
    variants = [j.cfg.variant for j in result["jobs"]]
    assert (
        len(variants) == 8 and "robertashare" not in variants and "roberta2gpt" not in variants
    )  # WMT's rows
    assert all(str(j.run_dir).startswith("outputs/sweeps/rothe_grid-wmt14_en_de/") for j in result["jobs"])
    budgets = {j.cfg.variant: j.budget["total"] for j in result["jobs"]}
    assert budgets["bertshare"] < budgets["bert2bert"] < budgets["bert2gpt"]  # from conf/arch facts
    assert result["total_s"] is None and "No probe" in render(result)


def test_plan_of_an_optuna_search_counts_its_trials():
    result = plan(
        ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "encoder=minilm", "decoder=minilm"], 1, False
    )
    assert len(result["jobs"]) == 3 and all(j.trial and j.state == "new" for j in result["jobs"])
    assert "3 trials of the base config" in render(result) and "<chosen by Optuna>" in render(result)


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
    # the report says how its beam search normalises lengths, unlike the paper's (GNMT)
    assert "GNMT" in "".join(scoring_lines([run]))
    assert "GNMT" not in "".join(scoring_lines([{**run, "data": "xsum"}]))
    # a run from before the canonical form recorded nothing: it was scored as given, and the report says so
    assert scoring_lines([run])[0] == "- `text`: `as_given (unrecorded: an older run)`"
