"""Process-wide settings and where this process stands (launcher, DDP rank, sweep): one visible place.

Nothing here runs at import time. Every entry point calls `setup_process()` first; `register_resolvers()`
is also called before Hydra composes a config (the resolvers are needed to read it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import warnings

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from transformers.utils import logging as hf_logging

from src.system.errors import UserError
from src.system.gpu_lease import lease_device
from src.system.hardware import keep_freed_host_memory

log = logging.getLogger(__name__)


RESOLVERS = {
    # ${coalesce:a,b}: the first value that is not null (run names: the variant's, else encoder2decoder)
    "coalesce": lambda *values: next((v for v in values if v is not None), None),
    # ${model_name:path_or_hub_id}: a saved model's last path part (pretrained_seq2seq runs are named after it)
    "model_name": lambda ref: None if ref is None else str(ref).rstrip("/").split("/")[-1],
    # ${short_hash:text}: 8 hex digits naming a sweep job by its overrides, the same on every re-run
    "short_hash": lambda text: hashlib.sha1(str(text).encode()).hexdigest()[:8],
    # ${pid:}: this process's id, so that two commands started in the same second get directories of their own
    "pid": lambda: str(os.getpid()),
}


def register_resolvers() -> None:
    """The project's OmegaConf resolvers (idempotent): configs use them in run and sweep names."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def setup_process(reuse_host_memory: bool = False) -> None:
    """What every entry point sets before it builds anything; none of it changes results.

    - the config resolvers (a sweep job in a fresh process reads its config only after this);
    - tokenizers' own thread pool off (it would deadlock in forked data workers, and warns);
    - Lightning 2.6's pytree deprecation notice about its own code under torch 2.13 silenced;
    - transformers' per-tensor loading bars off (the parameter budget summarises a load);
    - Lightning's console notes that say nothing about this run (`quiet_library_notes`);
    - `reuse_host_memory` (the training and evaluation commands' key of that name, true by default): glibc keeps
      freed memory (speed only: see docs/performance.md).
    """
    register_resolvers()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    quiet_library_notes()

    hf_logging.disable_progress_bar()
    if reuse_host_memory and keep_freed_host_memory():
        log.debug("glibc keeps freed memory for reuse (reuse_host_memory=false turns it off)")


#: Lightning's rank-zero INFO lines that a run of this project never needs: the hardware census (the run's device
#: is in its record and its W&B config; a GPU left unused still warns, as a PossibleUserWarning) and the tips
#: advertising Lightning's cloud services (litlogger, litmodels). Matched from the start of the message.
LIGHTNING_NOTES = (
    r"(GPU|TPU|HPU|IPU) available: ",
    r"💡 Tip: ",
)
#: The loggers `rank_zero_info` writes to (lightning.pytorch's replaces lightning.fabric's when it is imported).
LIGHTNING_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of `patterns` (regular expressions) at INFO level or below;
    warnings and errors always pass."""

    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not self.pattern.match(record.getMessage())


def quiet_library_notes() -> None:
    """Silence where they start the library notes every run printed that say nothing about it (idempotent).

    Only named messages are dropped; the libraries' other warnings and errors show as before.
    - Lightning's device census ("GPU available: False, used: False", TPU/HPU/IPU) and its litlogger / litmodels
      tips: a filter on the logger `rank_zero_info` writes to;
    - outside a SLURM job, Lightning's "The `srun` command is available on your system but is not used" hint:
      this project runs on SLURM through hydra/launcher=slurm (docs/clusters.md), never by prefixing `srun`,
      and a local run on a login node is intended. Inside a SLURM job the hint still shows.
    """
    for name in LIGHTNING_RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(LIGHTNING_NOTES))
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings(
            "ignore",
            message=r"The `srun` command is available on your system but is not used",
            category=UserWarning,
        )


def is_launching_process() -> bool:
    """False in the extra processes of a DDP run (they must not write the run's files or open W&B runs).

    Lightning's own launcher marks them with LOCAL_RANK / NODE_RANK; under SLURM every task is started by SLURM
    and the rank is SLURM_PROCID.
    """
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_ddp_launch(strategy) -> None:
    """Lightning starts DDP workers by re-running the command, which in a local sweep is the whole sweep."""
    if is_multirun() and "ddp" in str(strategy) and "SLURM_JOB_ID" not in os.environ:
        raise UserError(
            "trainer=ddp inside a local sweep (-m) is not supported: Lightning would re-run the whole sweep in each "
            "worker. Fix: run each job on its own (python -m src.train trainer=ddp ...), or sweep with "
            "hydra/launcher=slurm, where SLURM starts each job's processes, or use hydra/launcher=local "
            "(one GPU per job, jobs in parallel)."
        )


def leased_devices(devices, accelerator: str, gpu_lease: bool = True):
    """A context giving `devices` for the Trainer: a leased GPU index for one-GPU jobs on a multi-GPU machine
    (`gpu_lease`), else `devices` as given (trainer.devices)."""
    one_gpu = str(devices) == "1" and accelerator in ("auto", "gpu", "cuda")
    if gpu_lease and one_gpu and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return _lease_as_list(torch.cuda.device_count())
    return contextlib.nullcontext(devices)


@contextlib.contextmanager
def _lease_as_list(n: int):
    with lease_device(n) as index:
        yield [index]
