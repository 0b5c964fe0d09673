"""Hydra takes launchers and sweepers only from the `hydra_plugins` package: this names the project's
(src/run/slurm.py, src/run/async_sweep.py)."""

from src.run.async_sweep import AsyncSweeper as ProjectAsyncSweeper
from src.run.slurm import ProjectSlurmLauncher


class SlurmLauncher(ProjectSlurmLauncher):
    """`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)."""


class AsyncSweeper(ProjectAsyncSweeper):
    """`hydra/sweeper=async` (conf/hydra/sweeper/async.yaml)."""
