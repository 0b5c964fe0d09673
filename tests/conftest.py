"""The tests' fixtures: tiny checkpoints of each family made once per test session, a tiny run's overrides, and a
tiny real sweep that the analysis tests read. What the tests import is in tests/helpers/."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from tests.helpers.checkpoints import MINILM, make_tiny_checkpoints
from tests.helpers.commands import run_cli
from tests.helpers.runs import seed_sweep_overrides
from tests.helpers.tiny_run import tiny_run

if "PYTEST_XDIST_WORKER" in os.environ:
    # One thread per test process when several share the cores (-n 2 on 2 cores): with two each, OpenMP threads
    # wait on a busy core and a tiny model's step took 40x longer (measured: 1.25 s alone, 51 s in the suite).
    # Commands the tests start inherit it. Results are the same; only speed changes.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_stop_carried_over():
    """A signal a test sends its own process (src.system.signals notes it for the training that follows, on purpose)
    ends with the test: the next test in this worker starts with no stop requested."""
    from src.system import signals

    yield
    signals._received = None


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """{"bert"|"roberta"|"gpt2": checkpoint dir, "minilm": the packaged real MiniLM}."""
    paths = make_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    paths["minilm"] = MINILM
    return paths


@pytest.fixture(scope="session")
def tiny_run_overrides() -> Callable[..., list[str]]:
    """tests.helpers.tiny_run.tiny_run, for fixtures and tests that build a tiny run's overrides as they go."""
    return tiny_run


@pytest.fixture(scope="session")
def seed_sweep(tiny, tmp_path_factory, worker_id) -> Path:
    """outputs of `src.train -m sharing=embeddings,shared seed=1,2` (4 tiny runs), made once for all workers."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root
    sweep = root / "seed_sweep"
    with FileLock(str(root / "seed_sweep.lock")):
        if not (sweep / "done").is_file():
            overrides = seed_sweep_overrides(tiny, sweep)
            proc = run_cli("src.train", "-m", *overrides)
            assert proc.returncode == 0, proc.stderr[-3000:]
            (sweep / "done").write_text(json.dumps(overrides))  # the command, with this worker's checkpoints
    return sweep
