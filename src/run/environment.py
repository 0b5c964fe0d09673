"""The machine a run needs, checked before anything loads or trains: one `error:` line naming the place and the fix.

- the temporary directory ($TMPDIR): it must exist and be writable (a tokenizer's files pass through it);
- W&B's own directories (data, cache, config) when the run logs to W&B: a read-only HOME otherwise fails at the
  first validation, after training started;
- the Hugging Face cache when a checkpoint or the data comes from the Hub;
- free space where checkpoints go, against the size of one checkpoint (weights and optimizer state), once the
  model is built (`check_checkpoint_space`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from huggingface_hub import constants

from src.config.schema import TrainConfig
from src.system.errors import UserError
from src.system.outputs import existing_directory, free_mb

#: the free space $TMPDIR needs: tokenizer files pass through it (a few MB each)
TMP_NEEDED_MB = 64


def writable(directory: Path) -> str | None:
    """Why a file cannot be created in `directory` (or in its nearest existing parent, where it would be made),
    or None when it can. Tried for real: a read-only file system refuses root too."""
    probe = existing_directory(directory)
    if probe is None or not probe.is_dir():
        return "it is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".warmstart-probe-"):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def check_tmpdir() -> None:
    given = os.environ.get("TMPDIR")
    where = Path(given) if given else Path(tempfile.gettempdir())
    if given and not where.is_dir():
        raise UserError(
            f"TMPDIR={given} does not exist. Fix: create it, or point TMPDIR at a writable directory (or unset it)."
        )
    why = writable(where)
    if why:
        raise UserError(
            f"the temporary directory {where} is not writable ({why}). Fix: TMPDIR=<a writable directory>."
        )
    free = free_mb(where)
    if free is not None and free < TMP_NEEDED_MB:
        raise UserError(
            f"the temporary directory {where} has {free:.0f} MB free; a run needs {TMP_NEEDED_MB} MB there. "
            "Fix: free space there, or TMPDIR=<a directory with room>."
        )


def wandb_directories() -> dict[str, Path]:
    """Where wandb writes besides the run directory: {its environment variable: directory}."""
    import wandb.env as wenv  # W&B (0.7 s to import) only once a run checks its directories

    dirs = {
        "WANDB_DATA_DIR": Path(wenv.get_data_dir()),
        "WANDB_CACHE_DIR": Path(wenv.get_cache_dir()),
    }
    config = os.environ.get("WANDB_CONFIG_DIR") or str(Path.home() / ".config" / "wandb")
    dirs["WANDB_CONFIG_DIR"] = Path(config)
    return dirs


def check_wandb() -> None:
    for variable, directory in wandb_directories().items():
        why = writable(directory)
        if why:
            raise UserError(
                f"W&B writes to {directory}, which is not writable ({why}; HOME={Path.home()}). "
                f"Fix: {variable}=<a writable directory>, or logger=csv / logger=none."
            )


def check_hf_cache() -> None:
    directory = Path(constants.HF_HUB_CACHE)
    why = writable(directory)
    if why:
        raise UserError(
            f"the Hugging Face cache {directory} is not writable ({why}; HOME={Path.home()}), and this run loads "
            "from the Hub. Fix: HF_HOME=<a writable directory>, or local checkpoints and data.path=DIR."
        )


def uses_hub(config: TrainConfig) -> bool:
    """Whether the run loads a checkpoint or its data from the Hugging Face Hub (not a local path or package)."""
    names = [config.pretrained_seq2seq]
    if not config.pretrained_seq2seq:
        names += [config.encoder.checkpoint, config.decoder.checkpoint]
    remote = any(
        isinstance(n, str) and not n.startswith(("pkg://", "/", ".", "~")) and not Path(n).exists()
        for n in names
    )
    return remote or (config.data.loader == "hub" and not config.data.path)


def check_environment(config: TrainConfig) -> None:
    """Everything above that can be known before the model loads."""
    check_tmpdir()
    if config.logger.kind == "wandb" and config.logger.mode != "disabled":
        check_wandb()
    if uses_hub(config):
        check_hf_cache()


def check_checkpoint_space(directory: Path, parameters: int) -> None:
    """Refuse to train where not even one checkpoint fits: fp32 weights and Adam's two moments, about 12 bytes a
    parameter (a checkpoint is written beside the one it replaces, so the first needs this much free)."""
    need = parameters * 12 / 2**20
    free = free_mb(directory)
    if free is not None and free < need:
        raise UserError(
            f"{directory} has {free:.0f} MB free; one checkpoint of this model takes about {need:.0f} MB. "
            "Fix: free space there, or write the run elsewhere (hydra.run.dir=...)."
        )
