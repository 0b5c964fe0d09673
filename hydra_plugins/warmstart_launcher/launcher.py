"""Hydra takes launchers only from the `hydra_plugins` package: this names the project's (src/slurm.py)."""

from src.slurm import ProjectSlurmLauncher


class SlurmLauncher(ProjectSlurmLauncher):
    """`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)."""
