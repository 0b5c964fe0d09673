"""Hydra takes launchers only from the `hydra_plugins` package: this names the project's (src/run/slurm.py)."""

from src.run.slurm import ProjectSlurmLauncher


class SlurmLauncher(ProjectSlurmLauncher):
    """`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)."""
