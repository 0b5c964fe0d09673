"""The jobs of a sweep, as `python -m src.train -m ...` would run them: composed as its sweeper and launcher do,
each with its run directory, its state there (completed, resumable, failed, new), its parameter budget and devices."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config.schema import composed_model_spec
from src.models.builder import BuildFrom, architecture, build
from src.paper.variants import arch_facts
from src.run.record import finished, read_metrics, sweep_job_dir
from src.system.errors import UserError
from src.system.paths import CONF


# ---- the sweep's jobs ------------------------------------------------------------------------------------------
@dataclass
class Job:
    overrides: list[str]
    cfg: DictConfig  # the job's composed config (Hydra's included)
    run_dir: Path
    state: str = "new"  # completed | resumable | failed | new
    budget: dict = field(default_factory=dict)
    arch: dict = field(default_factory=dict)
    estimate_s: float | None = None
    trial: bool = False  # an Optuna trial: its values, hence its directory, are chosen as the sweep runs


def sweep_jobs(overrides: list[str]) -> tuple[list[Job], dict]:
    """The jobs `python -m src.train -m <overrides>` would run, composed as its sweeper and launcher do."""
    setup_globals()
    with initialize_config_dir(str(CONF), version_base="1.3", job_name="train"):
        loader = GlobalHydra.instance().config_loader()
        try:
            base = loader.load_configuration("train", list(overrides), run_mode=RunMode.MULTIRUN)
        except HydraException as err:
            raise UserError(f"these overrides do not compose: {err}") from None
        sweeper = base.hydra.sweeper
        info = {"sweeper": str(sweeper.get("_target_", "")), "sweep_name_fixed": True}
        # Optuna chooses each trial's values as the sweep runs: plan n_trials of the base config
        if "optuna" in info["sweeper"].lower():
            n = int(sweeper.get("n_trials", 1))
            plain = [o for o in overrides if not re.search(r"[,(]", o.split("=", 1)[-1])]
            batches = [[plain]] * n
            info["note"] = (
                f"Optuna chooses each trial's values as the sweep runs: {n} trials of the base config"
            )
        else:
            params = sweeper.get("params")
            params = OmegaConf.to_container(params, resolve=True) if params else {}
            lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(lines)
            batches = BasicSweeper.split_arguments(parsed, None)
        jobs = []
        trial = "optuna" in info["sweeper"].lower()
        for batch in batches:
            for job_overrides in batch:
                cfg = loader.load_sweep_config(base, list(job_overrides))
                jobs.append(Job(list(job_overrides), cfg, sweep_job_dir(cfg.hydra.sweep), trial=trial))
        raw = OmegaConf.to_container(base, resolve=False).get("sweep_name")
        info["sweep_name_fixed"] = not str(raw).startswith("${now:")
    return jobs, info


def job_state(job: Job) -> str:
    """completed (the sweep skips it), resumable (last.ckpt), failed (will run again) or new."""
    if job.trial:
        return "new"
    if finished(job.run_dir, skip_completed=job.cfg.skip_completed, resume=job.cfg.resume) is not None:
        return "completed"
    if (job.run_dir / "checkpoints" / "last.ckpt").is_file():
        return "resumable"
    record = read_metrics(job.run_dir)
    return "failed" if record is not None and record.status == "failed" else "new"


def job_budget(cfg: DictConfig) -> tuple[dict, dict]:
    """(parameter budget, architecture) of a job on the meta device, from its checkpoints' facts."""
    spec = composed_model_spec(cfg)
    if spec.seq2seq:
        return {}, {}
    enc = None if spec.decoder_only else arch_facts(spec.encoder)
    arch = architecture(spec, enc, arch_facts(spec.decoder), same_vocab=spec.encoder == spec.decoder)
    return build(spec, BuildFrom.META, arch=arch).budget.as_dict(), arch


def job_devices(cfg: DictConfig) -> int:
    """Devices one job trains on: trainer.devices (a count or a list) x num_nodes; "auto" / -1 counts as one."""
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        n = max(devices, 1)
    elif OmegaConf.is_list(devices) or isinstance(devices, list):
        n = len(devices)
    else:
        n = 1
    return n * int(cfg.trainer.get("num_nodes") or 1)
