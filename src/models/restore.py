"""A checkpoint of `src.train` back as a module, offline: today's layout and the earlier one (before the model spec).

A checkpoint carries the model description (`built`: architecture and tokenizers) and the run's config, so it
rebuilds without the Hub. The LightningModule is imported where a model is loaded, not at the top: src.report and
src.average read checkpoints through this module (`read_checkpoint`) and start without Lightning (2 s to import).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

from src.models.spec import check_attention
from src.system.errors import UserError, one_line

log = logging.getLogger(__name__)

#: what to do about a file that is not a checkpoint of src.train
CHECKPOINT_FIX = (
    "give a checkpoint src.train wrote (outputs/runs/<run>/checkpoints/last.ckpt or best.ckpt) or its run "
    "directory; a copy cut short: copy it again"
)


def load_module(ckpt_path: str):
    """A checkpoint of `src.train` as a Seq2SeqModule, rebuilt offline (it carries its architecture and tokenizers).

    A path that is not such a checkpoint (missing, a directory, text, a zip cut short, another program's) is a
    UserError naming the file and the fix, not a traceback."""
    path = Path(ckpt_path).expanduser()
    ckpt = read_checkpoint(path)
    if "seq2seq" in ckpt:  # written before the model spec (2026-11): its description is kept elsewhere
        return _legacy_module(ckpt)
    if "built" not in ckpt.get("hyper_parameters", {}):
        raise UserError(
            f"{path} was not written by src.train (no model description inside). Fix: {CHECKPOINT_FIX}."
        )
    from src.models.module import Seq2SeqModule  # see the module's docstring

    return Seq2SeqModule.load_from_checkpoint(
        path, map_location="cpu", weights_only=True, **_runnable_attention(ckpt["hyper_parameters"])
    )


def read_checkpoint(path: Path) -> dict:
    """A checkpoint file's dict (`torch.load`, weights only); a path that is none (missing, a directory, text, a zip
    cut short, another program's pickle) is a UserError naming the file and the fix."""
    if path.is_dir():
        raise UserError(
            f"checkpoint {path} is a directory. Fix: ckpt_path={path / 'checkpoints' / 'last.ckpt'} (or best.ckpt)"
        )
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist. Fix: ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt"
        )

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        # RuntimeError: "PytorchStreamReader failed reading zip archive" (cut short); UnpicklingError: text or
        # another pickle; EOFError: an empty file
        reason = "not a zip archive, as torch.save writes" if not zipfile.is_zipfile(path) else one_line(err)
        raise UserError(
            f"{path} is not a checkpoint written by src.train ({reason}). Fix: {CHECKPOINT_FIX}."
        ) from None
    if not isinstance(ckpt, dict):
        raise UserError(
            f"{path} is not a checkpoint written by src.train (it holds a {type(ckpt).__name__}). Fix: {CHECKPOINT_FIX}."
        )
    return ckpt


def _runnable_attention(hparams: dict) -> dict:
    """A checkpoint trained with FlashAttention-2 loads with sdpa where that cannot run (no flash_attn, no CUDA):
    the attention implementation changes how attention is computed, not the weights. {} where nothing changes."""
    spec = hparams.get("model") or {}
    if spec.get("attn_implementation") != "flash_attention_2":
        return {}
    try:
        check_attention("flash_attention_2")
    except UserError as err:
        log.warning(
            "%s: this checkpoint runs with attn_implementation=sdpa here", str(err).split(". Fix:")[0]
        )
        return {"model": {**spec, "attn_implementation": "sdpa"}}
    return {}


def _legacy_module(ckpt: dict):
    """A checkpoint of the earlier layout (model arguments by checkpoint name, description under `seq2seq`)."""
    from src.models.module import Seq2SeqModule  # see the module's docstring

    old, extra = ckpt["hyper_parameters"], ckpt["seq2seq"]
    m = old["model"]
    spec = {
        "encoder": None if m.get("decoder_only") else m["encoder_checkpoint"] or m["decoder_checkpoint"],
        "decoder": m["decoder_checkpoint"] or m["encoder_checkpoint"],
        "encoder_weights": "pretrained" if m.get("encoder_pretrained", True) else "random",
        "decoder_weights": "pretrained" if m.get("decoder_pretrained", True) else "random",
        "sharing": m.get("sharing", "embeddings"),
    }
    built = {"arch": extra["arch"], "tokenizers": extra["tokenizers"]}
    module = Seq2SeqModule(**{**old, "model": spec}, built=built)
    module.load_state_dict(ckpt["state_dict"])
    module.run_config = extra.get("config")
    return module


def warm_start(module, ckpt_path: str) -> None:
    """Load the model weights of a src.train checkpoint into `module` (`warm_start_from=`): every weight the two
    models share by name and shape; the optimizer, schedule and step count start afresh. A checkpoint with no
    weight in common, or one of another shape, is a UserError naming it."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(
            f"warm_start_from={ckpt_path} does not exist. Fix: point it at a .ckpt file of src.train."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as err:  # noqa: BLE001 (a damaged or foreign file: named, not a traceback)
        raise UserError(
            f"warm_start_from={ckpt_path} is not a checkpoint written by src.train ({one_line(err)}). "
            f"Fix: {CHECKPOINT_FIX}."
        ) from None
    own = module.state_dict()
    shared = [k for k in state if k in own]
    other_shape = [k for k in shared if tuple(state[k].shape) != tuple(own[k].shape)]
    if not shared or other_shape:
        what = (
            f"{len(other_shape)} weights of another shape (e.g. {other_shape[0]})"
            if other_shape
            else "no weight"
        )
        raise UserError(
            f"warm_start_from={ckpt_path} has {what} in common with this model. Fix: a checkpoint of a model with "
            "the same architecture and vocabulary."
        )
    module.load_state_dict({k: state[k] for k in shared}, strict=False)
    log.info(
        "warm start: %d of %d weights from %s (optimizer, schedule and steps start afresh)",
        len(shared),
        len(own),
        path,
    )
