"""A DDP job across two nodes of a real SLURM cluster started for these tests (two slurmd daemons on this machine,
tests/helpers/slurm_cluster.py): `pytest -m slurm`, which `.ci/run` runs. Skipped with one line where SLURM is not
installed."""

from __future__ import annotations

import json

import pytest

from tests.helpers.commands import run_cli
from tests.helpers.slurm_cluster import missing, running
from tests.test_slurm import SLURM, TINY, _start, interrupt_when_paused

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(missing(2) is not None, reason=str(missing(2)))]

#: one process on each of two nodes: Lightning's SLURM environment makes them one DDP job of 2
TWO_NODES = [
    "hydra.launcher.nodes=2",
    "hydra.launcher.tasks_per_node=1",
    "trainer.num_nodes=2",
    "trainer.devices=1",
]


@pytest.fixture(autouse=True)
def one_thread_a_process(monkeypatch):
    """Every process of both jobs computes with one thread (the jobs' commands inherit it, sbatch passes it on).
    Lightning gives each DDP process on a CPU its share of the cores (here 2 processes on one node: 1 each, 1 process
    a node: 2 each), and sums split over threads round differently: equal metrics need equal threads."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(tmp_path_factory.mktemp("slurm2"), nodes=2) as c:
        yield c


def tasks_launched(cluster) -> dict[str, int]:
    """How many job steps each node's slurmd has launched so far (its log)."""
    return {
        name: cluster.slurmd_log(name).read_text().count("launch task StepId=")
        for name in cluster.node_names()
    }


def one_node_two_processes(tiny, tmp_path, *extra: str) -> dict:
    """The reference: the same job as one node's two DDP processes (Lightning starts the second), the same global
    batch (2 processes x data.batch_size)."""
    proc = run_cli(
        "src.train",
        *common(tiny),
        "trainer.devices=2",
        *extra,
        f"hydra.run.dir={tmp_path / 'one-node'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "one-node" / "metrics.json").read_text())


def common(tiny) -> list[str]:
    return [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        f"encoder.checkpoint={tiny['bert']}",
        f"decoder.checkpoint={tiny['bert']}",
        "logger=none",
        *TINY,
    ]


def test_a_two_node_job_gives_the_metrics_of_one_node_with_two_processes(cluster, tiny, tmp_path):
    expected = one_node_two_processes(tiny, tmp_path, "trainer.max_steps=6")
    before = tasks_launched(cluster)
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "src.train",
        "-m",
        *SLURM,
        *TWO_NODES,
        *common(tiny),
        "trainer.max_steps=6",
        "seed=42",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    after = tasks_launched(cluster)
    assert all(after[n] > before[n] for n in after), (before, after)  # a task ran on each node
    (run_dir,) = [p.parent for p in sweep.glob("*/metrics.json")]
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["status"] == "completed"
    assert result["batch"]["devices"] == 2 and result["batch"]["global"] == expected["batch"]["global"]
    assert result["test"] == expected["test"]
    assert result["validation"] == expected["validation"]
    # the first process wrote the run's files, once: no second record, no second set of predictions
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 8
    assert not list(run_dir.glob("error*.txt"))


def test_a_requeued_two_node_job_resumes_to_the_metrics_of_an_uninterrupted_one(cluster, tiny, tmp_path):
    """`scontrol requeue` of the two-node job in the middle of training: last.ckpt is saved, the job runs again on
    two nodes, resumes in its directory and ends with the metrics of an uninterrupted run."""
    expected = one_node_two_processes(tiny, tmp_path, "trainer.max_steps=20")
    marker, sweep = tmp_path / "paused", tmp_path / "sweep"
    proc = _start(
        "-m",
        *SLURM,
        *TWO_NODES,
        *common(tiny),
        "trainer.max_steps=20",
        "seed=42",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.pause._target_=tests.helpers.slurm_helpers.PauseOnce",
        "+callbacks.pause.step=8",
        f"+callbacks.pause.marker={marker}",
    )
    output = interrupt_when_paused(proc, marker, "requeue", pause_s=240, after_s=180)
    assert proc.returncode == 0, output[-3000:]
    (run_dir,) = [p.parent for p in sweep.glob("*/metrics.json")]
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["status"] == "completed"
    assert result["train"]["resumed_from"] == "checkpoints/last.ckpt" and result["train"]["steps"] == 20
    assert result["test"] == expected["test"]  # exactly the uninterrupted run's
