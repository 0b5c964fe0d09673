"""The end of a training sweep (`python -m src.train -m ...`): how many jobs completed and failed, in its last line,
and an exit status that says so (1 when any job failed), so that a script or CI running a grid sees a failure."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.run.record import RunRecord, finished, read_metrics, sweep_job_dir

log = logging.getLogger(__name__)


def job_outcomes(sweep_dir: Path) -> dict[str, list[str]]:
    """{status: [job directory names]} of a sweep directory's jobs (each a directory with a metrics.json)."""
    outcomes: dict[str, list[str]] = {}
    for metrics in sorted(sweep_dir.glob("*/metrics.json")):
        record = read_metrics(metrics.parent)
        status = record.status if record is not None else "unreadable"
        outcomes.setdefault(status, []).append(metrics.parent.name)
    return outcomes


def completed_before(sweep_config: DictConfig) -> RunRecord | None:
    """The completed run a sweep job's directory already holds (`sweep_config`: the job's composed config), which
    the sweep does not start again; None where the job is to run."""
    out = sweep_job_dir(sweep_config.hydra.sweep)
    return finished(out, skip_completed=sweep_config.skip_completed, resume=sweep_config.resume)


class SweepSummary(Callback):
    """Hydra callback of `src.train` (conf/train.yaml): after a sweep, one line of what its jobs came to."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        outcomes = job_outcomes(sweep_dir)
        total = sum(len(v) for v in outcomes.values())
        failed = outcomes.get("failed", [])
        done = len(outcomes.get("completed", []))
        other = total - done - len(failed)
        line = f"sweep {sweep_dir}: {total} jobs, {done} completed, {len(failed)} failed" + (
            f", {other} not finished" if other else ""
        )
        if failed:
            log.error(
                "%s (%s; errors in each job's metrics.json). python -m src.report %s",
                line,
                ", ".join(failed),
                sweep_dir,
            )
            raise SystemExit(1)
        log.info("%s. python -m src.report %s", line, sweep_dir)
