"""src.plan: a sweep's jobs, their states and budgets, estimates from a probe run, and the plan's arithmetic."""

from __future__ import annotations

import json
import mmap

import pytest
from omegaconf import OmegaConf

from src.analysis.plan import plan, render, validations
from src.analysis.probe import MemoryMeter, extrapolated_batch, fit_line, largest_batch, probe_config
from src.analysis.sweep import Job, job_devices
from src.system.errors import UserError
from tests.helpers.commands import compose_train, run_cli
from tests.helpers.runs import run_dirs


# ---- on the seed sweep (conftest) ------------------------------------------------------------------------------
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
    # the same jobs on a cluster of one node with two devices: two at a time
    on = plan["cluster"]
    assert on is None
    proc = run_cli("src.plan", *overrides, "--probe-steps", "2", "--cluster", "1x2", "--json", str(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    on = json.loads(extra.read_text())["cluster"]
    longest = max(j["estimate_s"] for j in json.loads(extra.read_text())["jobs"] if j["state"] == "new")
    assert on["devices"] == 2 and on["asynchronous_s"] == on["synchronous_s"] == pytest.approx(longest)
    assert "On 1x2 (2 devices):" in proc.stdout
    proc = run_cli("src.plan", *overrides, "--cluster", "2by4")
    assert proc.returncode == 2 and "--cluster '2by4' is not NODESxDEVICES. Fix: --cluster 2x4" in proc.stderr


# ---- the plan's arithmetic, each answer forced -------------------------------------------------------------------
def test_memory_fit_names_the_largest_batch_or_says_it_does_not_fit():
    gib = 1024**3
    fixed, per = fit_line(8, 3.0 * gib, 16, 5.0 * gib)  # 0.25 GiB an example on top of 1 GiB
    assert fixed == pytest.approx(1.0 * gib) and per == pytest.approx(0.25 * gib)
    assert largest_batch(fixed, per, capacity=10 * gib) == 32  # 0.9 x 10 GiB - 1 GiB = 8 GiB -> 32 examples
    assert largest_batch(fixed, per, capacity=1 * gib) == 0  # the model alone does not fit
    assert fit_line(16, 5.0 * gib, 16, 5.0 * gib) == (5.0 * gib, 0.0)


def test_a_peak_that_barely_grew_gives_no_largest_eval_batch_rather_than_an_absurd_one():
    gib = 1024**3
    # a CPU's resident set 40 kB higher at batch 64 than at 32: page noise, which divided the room into ~160 million
    assert extrapolated_batch([(32, 1.80 * gib), (64, 1.80 * gib + 40_000)], capacity=23 * gib) is None
    assert extrapolated_batch([(32, 1.80 * gib), (64, 1.80 * gib)], capacity=23 * gib) is None
    # real growth: as above
    assert extrapolated_batch([(8, 3.0 * gib), (16, 5.0 * gib)], capacity=10 * gib) == 32


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
    # 64 MiB of pages new to the process (an anonymous map): freed heap memory this process keeps for reuse
    # (reuse_host_memory, set by earlier tests of the same worker) would not raise the resident peak
    block = mmap.mmap(-1, 64 * 1024**2)
    block.write(b"\1" * (64 * 1024**2))
    assert meter.peak() >= before + 60 * 1024**2
    block.close()
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


def test_a_cluster_runs_jobs_as_devices_free_up_or_in_synchronous_batches():
    """Two devices, jobs of 10, 1, 1, 1 and 1 s: a freed device takes the next job (10 s), where batches of two
    wait for their slowest (10 + 1 + 1 = 12 s); a two-device job waits for both devices."""
    from src.analysis.plan import cluster_devices, schedules

    one_each = [(10.0, 1), (1.0, 1), (1.0, 1), (1.0, 1), (1.0, 1)]
    assert schedules(one_each, 2) == {"devices": 2, "asynchronous_s": 10.0, "synchronous_s": 12.0}
    assert schedules(one_each, 1)["asynchronous_s"] == schedules(one_each, 1)["synchronous_s"] == 14.0
    wide = [(1.0, 1), (5.0, 2), (1.0, 1)]
    assert schedules(wide, 2) == {"devices": 2, "asynchronous_s": 7.0, "synchronous_s": 7.0}
    assert schedules(wide, 3)["asynchronous_s"] == 5.0  # the 5-s job starts at once on two free devices
    assert schedules([], 4)["asynchronous_s"] == 0.0
    assert cluster_devices("2x4") == 8 and cluster_devices(" 1 x 2 ") == 2
    for bad in ("2", "0x4", "2x0", "x", "2x4x1"):
        with pytest.raises(UserError, match="is not NODESxDEVICES"):
            cluster_devices(bad)


# ---- the paper's whole grid, from its FLOPs --------------------------------------------------------------------
def test_the_paper_grid_has_every_base_row_of_its_tables_at_the_papers_steps_batch_and_lengths():
    from src.paper.grid_cost import WMT14_TRAIN_PAIRS, _task_budget, paper_cells

    cells = paper_cells()
    assert len(cells) == 66  # 10 variants on five tasks, 8 on each WMT direction (no RoBERTa rows)
    assert {v for t, v in cells if t.startswith("wmt14")} == {
        "rnd2rnd", "bert2rnd", "rnd2bert", "bert2bert", "bertshare", "gpt", "rnd2gpt", "bert2gpt"
    }  # fmt: skip
    # the paper's training setup (../shared/reference/rothe2020.md): steps, batch, source / target tokens
    assert _task_budget("discofuse") == (300_000, 256, 128, 128)
    assert _task_budget("wikisplit") == (300_000, 256, 128, 128)
    assert _task_budget("gigaword") == (500_000, 256, 128, 32)
    assert _task_budget("cnn_dailymail") == (300_000, 128, 512, 128)
    assert _task_budget("xsum") == (200_000, 128, 512, 64)
    assert _task_budget("wmt14_en_de") == (-(-30 * WMT14_TRAIN_PAIRS // 256), 256, 128, 128)  # 30 epochs


def test_a_cells_device_hours_are_its_flops_at_the_cards_peak_times_the_mfu():
    from transformers import BertConfig

    from src.paper.grid_cost import cell_cost
    from src.system.paths import CONF

    cell = cell_cost("xsum", "bert2bert")
    facts = OmegaConf.to_container(OmegaConf.load(CONF / "arch" / "bert-base-cased.yaml"))
    facts.pop("model_type")
    encoder = BertConfig(**facts)
    decoder = BertConfig(**facts, is_decoder=True, add_cross_attention=True)
    from src.models.flops import train_flops

    assert cell["flops"] == pytest.approx(200_000 * 128 * train_flops(encoder, decoder, 512, 64), rel=1e-9)
    proc = run_cli("src.plan", "--paper-grid", "extra=1")
    assert "--paper-grid takes no overrides" in proc.stderr and proc.returncode == 2, proc.stderr[-2000:]
    proc = run_cli("src.plan", "--paper-grid", "--gpu", "B9000")
    assert proc.returncode == 2 and "is not a known card" in proc.stderr, proc.stderr[-2000:]
