"""Sweeps on a real SLURM cluster started for these tests (tests/helpers/slurm_cluster.py): `pytest -m slurm`.

Skipped with one line where SLURM is not installed; `.ci/run` installs it and runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers.commands import CACHE, REPO, run_cli
from tests.helpers.slurm_cluster import missing, running
from tests.helpers.tiny_run import tiny_run

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
]
TINY = tiny_run(
    steps=None,
    val_every=5,
    log_every=5,
    warmup=2,
    lr="1e-3",
    logger=None,
    train=48,
    test=8,
    batch=4,
    eval_batch=4,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def metrics_of(directory) -> dict:
    return {
        json.loads(p.read_text())["sharing"]: json.loads(p.read_text())
        for p in directory.glob("*/metrics.json")
    }


def test_a_sweep_runs_as_slurm_jobs_records_a_failure_and_a_rerun_submits_only_what_is_unfinished(
    cluster, tiny, tmp_path
):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *SLURM,
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "sharing=none,embeddings,shared",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.fail._target_=tests.helpers.slurm_helpers.FailOn",
        "+callbacks.fail.sharing=shared",
        "trainer.max_steps=6",
        "logger=none",
        *TINY,
    ]
    proc = run_cli("src.train", *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]  # a job failed: the sweep's status and last line say so
    assert f"sweep {sweep}: 3 jobs, 2 completed, 1 failed" in proc.stdout.splitlines()[-1]
    runs = metrics_of(sweep)
    assert {k: r["status"] for k, r in runs.items()} == {
        "none": "completed",
        "embeddings": "completed",
        "shared": "failed",
    }
    assert "fails on purpose" in runs["shared"]["error"]
    assert runs["none"]["train"]["steps"] == 6 and set(runs["none"]["test"]) >= {"rouge1", "exact", "loss"}
    assert "Bypassing sacct" not in output and output.count("job states come from squeue") == 1

    report = run_cli("src.report", str(sweep), "--wandb", "disabled")
    assert report.returncode == 0, report.stderr[-2000:]
    table = (sweep / "report.md").read_text()
    assert table.count("| completed |") == 2 and table.count("| failed: RuntimeError: a job that fails") == 1

    finished = [p for p in sweep.glob("*/metrics.json") if json.loads(p.read_text())["status"] == "completed"]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    again = run_cli("src.train", *args)
    output = again.stdout + again.stderr
    assert again.returncode == 1, output[-3000:]
    assert output.count("already completed") == 2 and output.count("not submitted") == 2
    assert "sharing=shared" in output  # the failed job was submitted again (and failed again)
    assert metrics_of(sweep)["shared"]["status"] == "failed"
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps  # the finished runs were left alone


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WARMSTART_CACHE": CACHE, "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, "-m", "src.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _squeue(*fields: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-o", "|".join(fields)], capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def interrupt_when_paused(proc: subprocess.Popen, marker, how: str, pause_s: float, after_s: float) -> str:
    """Once the job has written `marker` (PauseOnce), requeue it (`scontrol requeue`, as a preemption does) or send
    it submitit's time-limit warning (SIGUSR2); let the requeued job start at once; the sweep command's output."""
    deadline = time.time() + pause_s
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate()[0][-3000:] if proc.poll() is not None else "no pause in time"
    (job,) = [j for j, state in _squeue("%i", "%T") if state == "RUNNING"]
    if how == "requeue":
        subprocess.run(["scontrol", "requeue", job], check=True)
    else:
        subprocess.run(["scancel", "--signal=USR2", "--full", job], check=True)
    while proc.poll() is None and time.time() < deadline + after_s:  # a requeued job waits for its begin time
        for j, state, reason in _squeue("%i", "%T", "%r"):
            if state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={j}", "StartTime=now"], check=False)
        time.sleep(1)
    return proc.communicate(timeout=60)[0]


@pytest.mark.parametrize("how", ["requeue", "time-limit warning"])
def test_a_preempted_job_saves_resumes_and_the_sweep_waits_for_its_result(cluster, tiny, tmp_path, how):
    """`scontrol requeue` (preemption) or SIGUSR2 (submitit's warning before the time limit) in the middle of
    training: last.ckpt is saved, the job is requeued, resumes in its directory and ends with the metrics of an
    uninterrupted run; the sweep command returns only then, and the W&B run continues under the same id."""
    common = [
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "trainer.max_steps=20",
        "logger=wandb",
        "logger.mode=offline",
        *TINY,
    ]
    alone = run_cli("src.train", *common, f"hydra.run.dir={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr[-3000:]
    expected = json.loads((tmp_path / "alone" / "metrics.json").read_text())

    marker, sweep = tmp_path / "paused", tmp_path / "sweep"
    proc = _start(
        "-m",
        *SLURM,
        *common,
        "seed=42",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.pause._target_=tests.helpers.slurm_helpers.PauseOnce",
        "+callbacks.pause.step=8",
        f"+callbacks.pause.marker={marker}",
    )
    output = interrupt_when_paused(proc, marker, how, pause_s=180, after_s=120)
    assert proc.returncode == 0, output[-3000:]

    (run_dir,) = [p.parent for p in sweep.glob("*/metrics.json")]
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["status"] == "completed"  # the sweep returned after the resumed job, not at the requeue
    assert result["train"]["resumed_from"] == "checkpoints/last.ckpt"
    assert result["train"]["steps"] == 20
    assert result["test"] == expected["test"]  # exactly the uninterrupted run's
    runs = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert (
        len(list((run_dir / "wandb").glob("offline-run-*"))) == 2 and len(runs) == 1
    )  # one W&B run, resumed


def test_ddp_across_two_slurm_tasks_gives_the_metrics_of_local_ddp(cluster, tiny, tmp_path):
    common = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "trainer.max_steps=6",
        "logger=none",
        *TINY,
    ]
    local = run_cli("src.train", *common, f"hydra.run.dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr[-3000:]
    expected = json.loads((tmp_path / "local" / "metrics.json").read_text())

    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train",
        "-m",
        *SLURM,
        "hydra.launcher.tasks_per_node=2",
        *common,
        "seed=42",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (run_dir,) = [p.parent for p in sweep.glob("*/metrics.json")]
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["status"] == "completed" and result["batch"]["devices"] == 2
    assert result["test"] == expected["test"]
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 8
