"""warmstart: warm-started encoder-decoder experiments (Rothe et al., TACL 2020) on Lightning, transformers, Hydra.

The one thing done on import: what Hydra needs before it composes a config is registered (idempotent, names
only): the project's config resolvers (run and sweep names, the paper's variants) and the commands' schemas
(src.config.schema). A
sweep job that a launcher (joblib, SLURM) starts in a fresh process imports this package to unpickle its task,
and Hydra reads the job's directory name, which uses the resolvers, before any of our code runs. Everything else
a process needs is set by `src.system.process.setup_process`, which every entry point calls.
"""

from src.config.schema import register as register_schemas
from src.paper.variants import register_resolver as register_paper_resolver
from src.system.process import register_resolvers

register_resolvers()
register_paper_resolver()
register_schemas()
