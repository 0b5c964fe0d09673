"""`hydra/launcher=slurm`: each job of a sweep as a SLURM job (submitit), with what a grid needs on a cluster.

- Jobs whose run directory already holds a completed run are not submitted again (the sweep's re-run is cheap).
- On a cluster without job accounting (`AccountingStorageType=accounting_storage/none`, common on small ones)
  job states come from `squeue`, said once, instead of a failing `sacct` warning on every poll.
- Preemption, requeue and time limits: the job saves `last.ckpt` and is requeued without handing back a result
  (`src.run.callbacks.SaveOnSignal`, `src.train.train_or_skip`), so this side keeps waiting for the resumed job's result.
"""

from __future__ import annotations

import logging
import subprocess

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from src.run.record import sweep_job_dir
from src.run.sweeps import completed_before

log = logging.getLogger(__name__)


def accounting_enabled() -> bool:
    """Whether the cluster keeps job accounting (what `sacct` reads)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: leave submitit as it is
    line = next((x for x in out.splitlines() if x.startswith("AccountingStorageType")), "")
    return "accounting_storage/none" not in line


def squeue_watcher(delay_s: int = 60):
    """A submitit job watcher that reads job states from `squeue` (finished jobs stay listed for MinJobAge)."""

    class SqueueWatcher(SlurmInfoWatcher):
        def _make_command(self):
            to_check = {x.split("_")[0] for x in self._registered - self._finished}
            if not to_check:
                return None
            return ["squeue", "-h", "-r", "-o", "%i|%T|%N", "-j", ",".join(sorted(to_check))]

        def read_info(self, string):
            text = string.decode() if isinstance(string, bytes) else string
            info = super().read_info("JobID|State|NodeList\n" + text)
            # a job squeue no longer lists has left the queue: done (its result file says how it ended)
            for job_id in self._registered - self._finished - set(info):
                if job_id in self._info_dict:
                    info[job_id] = {"JobID": job_id, "State": "COMPLETED", "NodeList": ""}
            return info

    return SqueueWatcher(delay_s=delay_s)


class ProjectSlurmLauncher(SubmititSlurmLauncher):
    """submitit's SLURM launcher; finished jobs are not resubmitted, job states from squeue where sacct has none."""

    def launch(self, job_overrides, initial_job_idx: int):
        if type(SlurmJob.watcher).__name__ != "SqueueWatcher" and not accounting_enabled():
            log.info("this cluster keeps no job accounting: job states come from squeue, not sacct")
            SlurmJob.watcher = squeue_watcher()
        todo, done = [], {}
        for i, overrides in enumerate(job_overrides):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            out = sweep_job_dir(sweep_config.hydra.sweep)
            metrics = completed_before(sweep_config)
            if metrics is None:
                todo.append(i)
                continue
            log.info(
                "#%d %s: already completed in %s, not submitted",
                initial_job_idx + i,
                " ".join(overrides),
                out,
            )
            done[i] = JobReturn(
                overrides=list(overrides),
                cfg=OmegaConf.create({}),
                hydra_cfg=OmegaConf.create({}),
                working_dir=str(out),
                task_name=sweep_config.hydra.job.name,
                status=JobStatus.COMPLETED,
                _return_value=metrics.monitored(str(sweep_config.monitor)),
            )
        results = super().launch([job_overrides[i] for i in todo], initial_job_idx) if todo else []
        by_index = {**done, **dict(zip(todo, results, strict=True))}
        return [by_index[i] for i in range(len(job_overrides))]
