"""warmstart: warm-started encoder-decoder experiments (Rothe et al., TACL 2020) on Lightning, transformers, Hydra."""

import hashlib
import warnings

from omegaconf import OmegaConf

# Lightning 2.6's pytree helper under torch 2.13: a deprecation notice about Lightning's own code, every run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

# ${coalesce:a,b}: the first value that is not null (run names: the variant's, else encoder2decoder).
if not OmegaConf.has_resolver("coalesce"):
    OmegaConf.register_new_resolver(
        "coalesce", lambda *values: next((v for v in values if v is not None), None)
    )

# ${short_hash:text}: 8 hex digits naming a sweep job by its overrides, the same on every re-run of the sweep.
if not OmegaConf.has_resolver("short_hash"):
    OmegaConf.register_new_resolver(
        "short_hash", lambda text: hashlib.sha1(str(text).encode()).hexdigest()[:8]
    )
