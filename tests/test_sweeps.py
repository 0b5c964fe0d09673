"""Sweeps: one GPU per parallel job (leases), the local launcher with 2 jobs at once, the SLURM and Optuna configs,
an Optuna search, DDP inside a local sweep refused, and a failing job that does not stop its sweep (a re-run skips
finished jobs). On a real SLURM cluster: test_slurm.py."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.analysis.report import write_report
from src.system.gpu_lease import lease_device
from tests.helpers.commands import REPO, run_cli
from tests.helpers.tiny_run import tiny_run

TINY = tiny_run(test=6, batch=4, eval_batch=4)


def _hold(lock_dir, hold_s, out):
    with lease_device(2, lock_dir, poll_s=0.05) as index:
        out.put((index, time.monotonic()))
        time.sleep(hold_s)
    out.put(("released", time.monotonic()))


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
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


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
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
        "+callbacks.rendezvous._target_=tests.helpers.rendezvous.Rendezvous",
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


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
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
    # the sweep goes on; each job records why it did not run, and the sweep's status and last line say so
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"sweep {tmp_path}: 2 jobs, 0 completed, 2 failed" in proc.stdout.splitlines()[-1]
    records = [json.loads(path.read_text()) for path in tmp_path.glob("*/metrics.json")]
    assert len(records) == 2
    for metrics in records:
        assert metrics["status"] == "failed" and "hydra/launcher=slurm" in metrics["error"]


def sweep(tiny, sweep_dir, *extra):
    return run_cli(
        "src.train",
        "-m",
        f"encoder.checkpoint={tiny['bert']}",
        "decoder=gpt2",
        f"decoder.checkpoint={tiny['gpt2']}",
        "sharing=embeddings,shared",
        f"hydra.sweep.dir={sweep_dir}",
        *tiny_run(steps=2),
        *extra,
    )


@pytest.mark.slow  # 20-50 s of one worker: make test-slow (CI runs it), the default run stays under 10 min
def test_a_failing_job_does_not_stop_the_sweep_and_a_rerun_skips_finished_jobs(tiny, tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = sweep(tiny, sweep_dir)
    assert first.returncode == 1, first.stderr[-3000:]  # the sweep went on, and its status and last line say
    assert f"sweep {sweep_dir}: 2 jobs, 1 completed, 1 failed" in first.stdout.splitlines()[-1]
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}
    assert len(runs) == 2 and all(name.startswith("bert2gpt2-synthetic-s42-") for name in runs)
    statuses = sorted(r["status"] for r in runs.values())
    assert statuses == ["completed", "failed"]
    failed = next(r for r in runs.values() if r["status"] == "failed")
    assert "sharing=shared" in failed["error"]
    failed_dir = next(d for d, r in runs.items() if r["status"] == "failed")
    assert (sweep_dir / failed_dir / "error.txt").is_file()
    ok_dir = next(d for d, r in runs.items() if r["status"] == "completed")
    stamp = (sweep_dir / ok_dir / "metrics.json").stat().st_mtime_ns

    again = sweep(tiny, sweep_dir)
    assert again.returncode == 1  # the bad job fails again; the finished one is skipped
    assert "already completed" in again.stderr + again.stdout
    assert (sweep_dir / ok_dir / "metrics.json").stat().st_mtime_ns == stamp  # not re-run

    report = write_report(sweep_dir)
    assert report["runs"] == 2 and report["failed"] == 1
    md = (sweep_dir / "report.md").read_text()
    assert "failed: UserError" in md and "| completed |" in md
    assert (sweep_dir / "report.csv").read_text().count("\n") == 3
    assert (sweep_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
