"""warmstart: warm-started encoder-decoder experiments (Rothe et al., TACL 2020) on Lightning, transformers, Hydra."""

import warnings

# Lightning 2.6's pytree helper under torch 2.13: a deprecation notice about Lightning's own code, every run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
