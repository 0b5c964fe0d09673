"""Experiment loggers (`logger=` group): W&B (default), TensorBoard, CSV, none.

W&B runs online when credentials are present and the service is reachable, offline otherwise (saying once
where the run is and how to upload it). The API key is never read into a config, a log or an output here:
wandb reads it from its own environment / netrc.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import subprocess
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from src.run.run_record import RunRecord
from src.system.errors import UserError
from src.system.paths import REPO
from src.system.process import is_launching_process, is_multirun

log = logging.getLogger(__name__)
KINDS = ("wandb", "tensorboard", "csv", "none")
WANDB_MODES = ("auto", "online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}, so the W&B UI can filter on every key."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return out


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD's commit (with `-dirty` when the tree has changes), or None outside a git checkout."""
    repo = repo or REPO
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def _wandb_host() -> str:
    """The W&B server's host name (api.wandb.ai unless WANDB_BASE_URL names another)."""
    return (
        os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0].split(":")[0]
    )


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = _wandb_host()
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((_wandb_host(), 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_wandb_mode(mode: str) -> str:
    """auto -> online with credentials and a reachable service, else offline; WANDB_MODE in the environment wins."""
    if mode not in WANDB_MODES:
        raise UserError(f"logger.mode={mode!r} is not one of {', '.join(WANDB_MODES)}.")
    env = os.environ.get("WANDB_MODE")
    if mode == "auto" and env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    if mode != "auto":
        return mode
    return "online" if wandb_has_credentials() and wandb_reachable() else "offline"


def build_logger(
    kind: str,
    *,
    save_dir: str,
    name: str,
    group: str | None = None,
    tags: list[str] = (),
    job_type: str = "train",
    config: dict | None = None,
    project: str = "warmstart",
    entity: str | None = None,
    mode: str = "auto",
    log_model: bool = False,
):
    """A Lightning logger, or False for none.

    For W&B, a run id stored in `save_dir` is reused, so resuming a run continues the same W&B run.
    """
    # Lightning (2 s to import) here, not at the top: src.report and src.compare import this module for
    # resolve_wandb_mode and start without it
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    if kind == "none":
        return False
    if kind == "csv":
        return CSVLogger(save_dir=save_dir, name="csv", version="")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=save_dir, name="tensorboard", version="")
    if kind != "wandb":
        raise UserError(f"unknown logger {kind!r}. Fix: logger={' | logger='.join(KINDS)}.")
    mode = resolve_wandb_mode(mode)
    id_file = Path(save_dir) / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    logger = WandbLogger(
        name=name,
        project=project,
        entity=entity,
        group=group,
        tags=[t for t in tags if t],
        job_type=job_type,
        save_dir=save_dir,
        mode=mode,
        log_model=log_model,
        id=run_id,
        resume="allow" if run_id else None,
        config=config,
        settings=_wandb_settings(),
    )
    _drop_unset_anonymous(logger)
    experiment = logger.experiment  # starts the run now, so its id and directory are known
    if mode != "disabled":
        id_file.write_text(experiment.id)
    if mode == "offline":
        run_dir = Path(experiment.dir).parent
        log.info(
            "W&B is offline (no credentials or no connection); the run is in %s. Upload it with: "
            "wandb sync %s",
            run_dir,
            run_dir,
        )
    return logger


def _drop_unset_anonymous(logger) -> None:
    """Lightning's WandbLogger hands `wandb.init` anonymous=None even when it was not asked for; wandb (0.31)
    then warns "The anonymous setting has no effect and will be removed in a future version" in every run. The
    setting does nothing, so it is not passed at all (a value someone did set is left, and warned about)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]


def _wandb_settings():
    import wandb  # W&B (0.7 s to import) only for a run that logs to it

    # console capture off: Hydra already keeps the run's log; no code or git upload beyond the commit we log
    return wandb.Settings(console="off", save_code=False, disable_git=True, silent=True)


def finish_wandb(failed: bool = False) -> None:
    """Close the current W&B run, marked failed when the job failed (one run per job, even in a sweep)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        try:
            wandb.finish(exit_code=1 if failed else 0)
        except (
            ConnectionError,
            OSError,
        ) as err:  # its service was stopped with us (a SLURM requeue signals both)
            log.warning("W&B run not closed cleanly (%s); a resumed run continues it", err)


# ---- a run's logger and what it records at the end ----------------------------------------------------------
def wandb_group(sweep_name: str) -> str | None:
    """The sweep in a multirun (a grid is one group), else the experiment's name, else none."""
    if is_multirun():
        return sweep_name
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get("experiment")
    return None


def logger_for(run, kind: str, *, save_dir, name: str, group, job_type: str, config: dict, mode=None):
    """`build_logger` with a run's `logger` settings and tags (encoder, decoder, sharing, data, variant).

    Args:
        run: the run's TrainConfig.
    """
    lc = run.logger
    return build_logger(
        kind,
        save_dir=str(save_dir),
        name=name,
        group=group,
        tags=[run.encoder.name, run.decoder.name, run.sharing.mode, run.data.name, run.variant],
        job_type=job_type,
        config=config,
        project=lc.project,
        entity=lc.entity,
        mode=mode or lc.mode,
        log_model=False,  # logger.log_model uploads the exported model at the end (src.train), not checkpoints
    )


def make_logger(run, job_type: str = "train"):
    """The `logger=` choice for a training run (its TrainConfig), with the whole config (flattened) and the git
    commit.

    DDP's extra processes open no W&B run (the launching process logs for all).
    """
    kind = run.logger.kind if is_launching_process() or run.logger.kind != "wandb" else "none"
    config = {**flatten(run.as_dict()), "git_commit": git_commit()}
    return logger_for(
        run,
        kind,
        save_dir=run.output_dir,
        name=run.run_name,
        group=wandb_group(run.sweep_name),
        job_type=job_type,
        config=config,
    )


def log_results_to_wandb(
    logger,
    results: RunRecord,
    out: Path,
    predictions: list[dict],
    split: str = "test",
    model_dir: Path | None = None,
) -> None:
    """Test metrics and budget into the run summary; predictions as a table and as an artifact; the exported model
    (a Hugging Face directory) as a `model` artifact when given."""
    from lightning.pytorch.loggers import WandbLogger  # as in build_logger: not at the top, for src.report

    if not isinstance(logger, WandbLogger):
        return
    import wandb  # only for a run that logs to W&B

    run = logger.experiment
    run.summary.update(
        {
            **{f"{split}/{k}": v for k, v in results.scores(split).items()},
            **{f"params/{k}": v for k, v in results.params.items()},
            "status": results.status,
        }
    )
    columns = ["source", "reference", "prediction"]
    rows = [[r[c] for c in columns] for r in predictions]
    run.log({f"{split}/predictions": wandb.Table(columns=columns, data=rows)})
    artifact = wandb.Artifact(f"predictions-{run.id}", type="predictions")
    artifact.add_file(str(out / "predictions.jsonl"))
    run.log_artifact(artifact)
    if model_dir is not None:  # logger.log_model=true: the model as `python -m src.export` writes it
        model = wandb.Artifact(f"model-{run.id}", type="model", metadata={"test": results.test})
        model.add_dir(str(model_dir))
        run.log_artifact(model)
