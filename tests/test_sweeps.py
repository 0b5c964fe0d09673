"""Launchers: one GPU per parallel job (leases), the joblib launcher with 2 jobs, DDP with 2 CPU processes,
the SLURM and Optuna configs."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.system.gpu_lease import lease_device
from tests.conftest import REPO, run_cli, synthetic_overrides

TINY = [
    *synthetic_overrides(train=32, validation=4, test=6, batch=4, eval_batch=4, new_tokens=4, beams=1),
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "progress=plain",
    "logger=none",
]


def _hold(lock_dir, hold_s, out):
    with lease_device(2, lock_dir, poll_s=0.05) as index:
        out.put((index, time.monotonic()))
        time.sleep(hold_s)
    out.put(("released", time.monotonic()))


def test_each_job_leases_its_own_device_and_waits_when_all_are_busy(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    holders = [ctx.Process(target=_hold, args=(tmp_path, 2.0, out)) for _ in range(2)]
    for p in holders:
        p.start()
    first = [out.get(timeout=60) for _ in range(2)]
    assert sorted(i for i, _ in first) == [0, 1]  # never two jobs on one device
    waiter = ctx.Process(target=_hold, args=(tmp_path, 0.0, out))
    waiter.start()
    events = [out.get(timeout=60) for _ in range(4)]
    for p in (*holders, waiter):
        p.join(timeout=60)
    released = min(t for what, t in events if what == "released")
    acquired = [(i, t) for i, t in events if i != "released"]
    assert len(acquired) == 1 and acquired[0][1] >= released  # the third job waited for a free device


def test_local_launcher_runs_two_jobs_in_parallel(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        "-m",
        "hydra/launcher=local",
        "hydra.launcher.n_jobs=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "sharing=none,embeddings",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        # each job waits at the start of training until both have arrived: jobs run one after another fail
        "+callbacks.rendezvous._target_=tests.rendezvous.Rendezvous",
        f"+callbacks.rendezvous.dir={tmp_path / 'arrived'}",
        "+callbacks.rendezvous.parties=2",
        "+callbacks.rendezvous.timeout_s=60",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/metrics.json")]
    assert all(r["status"] == "completed" for r in runs), [r.get("error") for r in runs]
    assert sorted(r["sharing"] for r in runs) == ["embeddings", "none"]
    assert len(list((tmp_path / "arrived").iterdir())) == 2


def test_ddp_with_two_cpu_processes_writes_one_run_directory(tiny, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "src.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        f"hydra.run.dir={run_dir}",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["train"]["steps"] == 4
    rows = (run_dir / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 6  # both processes' shards, gathered, sampler padding dropped
    assert len({json.loads(r)["source"] for r in rows}) == 6


def test_slurm_and_optuna_configs_compose():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"],
            return_hydra_config=True,
        )
        launcher = cfg.hydra.launcher
        assert "SlurmLauncher" in launcher._target_ and launcher.tasks_per_node == 4
        assert launcher.max_num_timeout > 0 and launcher.gpus_per_node == 1
        cfg = compose(
            "train", overrides=["hparams_search=optuna", "experiment=demo"], return_hydra_config=True
        )
        sweeper = cfg.hydra.sweeper
        assert "OptunaSweeper" in sweeper._target_
        assert set(sweeper.params) == {"optimizer.lr", "optimizer.warmup_steps", "data.batch_size"}


def test_optuna_sweep_optimises_the_returned_metric(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        f"hydra.sweep.dir={tmp_path}",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_value == pytest.approx(min(r["validation"]["loss"] for r in runs), rel=1e-6)


def test_ddp_inside_a_local_sweep_is_refused_with_the_alternatives(tiny, tmp_path):
    proc = run_cli(
        "src.train",
        "-m",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "sharing=none,embeddings",
        f"hydra.sweep.dir={tmp_path}",
        *TINY,
    )
    assert proc.returncode == 0  # the sweep itself goes on; each job records why it did not run
    for path in tmp_path.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        assert metrics["status"] == "failed" and "hydra/launcher=slurm" in metrics["error"]
