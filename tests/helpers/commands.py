"""The project's commands as a user runs them (`python -m src.X` from the repository root) and its configs as the
command line composes them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = tempfile.mkdtemp(prefix="warmstart-test-cache-")  # tokenized splits of this test session


def run_cli(module: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m <module> overrides...` from the repository root, as a user would."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WARMSTART_CACHE": CACHE}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("WARMSTART_DEBUG", None)  # a developer's setting: the tests read the user's one-line errors
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(module: str, *overrides: str) -> subprocess.Popen:
    """`python -m <module> overrides...` started in the background (stdout and stderr as one text stream), for
    tests that signal or kill it while it runs."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WARMSTART_CACHE": CACHE}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("WARMSTART_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def compose_train(*overrides: str, hydra: bool = False):
    """The `src.train` config for these overrides, composed as the command line would (Hydra's config included
    with hydra=True)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)
