"""warmstart: warm-started encoder-decoder experiments (Rothe et al., TACL 2020) on Lightning, transformers, Hydra.

The one thing done on import: the project's config resolvers are registered (idempotent, names only). A sweep
job that a launcher (joblib, SLURM) starts in a fresh process imports this package to unpickle its task, and
Hydra reads the job's directory name, which uses them, before any of our code runs. Everything else a process
needs is set by `src.process.setup_process`, which every entry point calls.
"""

from src.process import register_resolvers

register_resolvers()
