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


def command_environment(env: dict | None = None) -> dict:
    """The environment a test runs a command in: the session's cache, no developer's debug switches; `env` changes
    it (None: remove the variable)."""
    environ = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WARMSTART_CACHE": CACHE}
    environ.pop("HYDRA_FULL_ERROR", None)
    environ.pop("WARMSTART_DEBUG", None)  # a developer's setting: the tests read the user's one-line errors
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


def run_cli(
    module: str, *overrides: str, timeout: int = 600, env: dict | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m <module> overrides...` from the repository root, as a user would; `env` changes the
    environment (`command_environment`), `stdin` is given as bytes. stdout and stderr come back as text."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        env=command_environment(env),
        capture_output=True,
        input=stdin,
        timeout=timeout,
    )
    proc.stdout, proc.stderr = (x.decode("utf-8", "replace") for x in (proc.stdout, proc.stderr))
    return proc


def start_cli(module: str, *overrides: str) -> subprocess.Popen:
    """`python -m <module> overrides...` started in the background (stdout and stderr as one text stream), for
    tests that signal or kill it while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        env=command_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a command that refused its input: exit 2, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def compose_train(*overrides: str, hydra: bool = False):
    """The `src.train` config for these overrides, composed as the command line would (Hydra's config included
    with hydra=True)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _checked(command: str, overrides, check) -> None:
    """Compose `command`'s config as its command line would and check it as the command does; a refusal, at
    composition or by a key's rule, is the UserError of the command's one `error:` line."""
    from hydra import compose, initialize_config_dir

    from src.config.hydra_errors import describe
    from src.system.errors import UserError

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        try:
            cfg = compose(command, overrides=[*overrides, "output_dir=/tmp/unused"])
        except Exception as ex:  # noqa: BLE001 (what the command would print, or the exception itself)
            line = describe(ex)
            if line is None:
                raise
            raise UserError(line) from None
    return check(cfg)


def check_train(*overrides: str):
    """`src.train`'s checks of a command line: every key's rule and the rules across groups; the TrainConfig."""
    from src.config.checks import check_run
    from src.config.schema import train_config

    def check(cfg):
        config = train_config(cfg)
        check_run(config)
        return config

    return _checked("train", overrides, check)


def check_eval(*overrides: str):
    """`src.eval`'s checks of a command line; the EvalConfig."""
    from src.config.schema import eval_config

    return _checked("eval", overrides, eval_config)
