"""Train, validate and test a warm-started encoder-decoder model.

python -m src.train experiment=demo                                    # offline demo (minilm2minilm)
python -m src.train encoder=bert decoder=gpt2                          # needs the Hugging Face Hub
python -m src.train paper=rothe2020 data=xsum variant=bertshare        # one cell of the paper, its settings
python -m src.train data=jsonl data.path=DIR trainer.max_steps=5000
python -m src.train -m encoder=minilm,rnd decoder=minilm               # a sweep
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.config.checks import check_run, world_size
from src.config.hydra_errors import hydra_entry
from src.config.schema import TrainConfig, identity, train_config
from src.models.export import export
from src.models.restore import warm_start
from src.run import record
from src.run.assemble import assemble, evaluate, make_trainer
from src.run.callbacks import Interrupted, RunEarlyStopping, Throughput, requeue_slurm_job
from src.run.environment import check_checkpoint_space, check_environment
from src.run.loggers import finish_wandb, log_results_to_wandb, make_logger, wandb_group
from src.run.run_record import RunRecord
from src.system.errors import UserError, report_user_errors
from src.system.outputs import results_table
from src.system.process import (
    check_ddp_launch,
    is_launching_process,
    is_multirun,
    leased_devices,
    setup_process,
)
from src.system.signals import StopRequested, received, stop_on_signals

log = logging.getLogger(__name__)


def train(config: TrainConfig) -> RunRecord:
    """Fit, then test the best (or last) checkpoint; writes metrics.json and predictions.jsonl.

    Returns:
        The run's record (metrics.json).
    """
    setup_process(config.reuse_host_memory)
    check_ddp_launch(config.trainer.strategy)
    lease = leased_devices(config.trainer.devices, config.trainer.accelerator, config.gpu_lease)
    with lease as devices, stop_on_signals():  # a signal while loading or tokenizing stops it
        try:
            return _fit_and_test(config, devices)
        except StopRequested as err:
            requeued = is_launching_process() and requeue_slurm_job(received() or "")
            raise Interrupted(str(err), requeued=requeued) from None


def _fit_and_test(config: TrainConfig, devices) -> RunRecord:
    started, out = time.time(), Path(config.output_dir)
    logger = make_logger(config)  # first, so that a job failing from here on still has its W&B run
    run = assemble(config, logger=logger, devices=devices)
    module, datamodule, trainer = run.module, run.datamodule, run.trainer
    check_checkpoint_space(out, module.budget.total)  # where not even one checkpoint fits, before training
    if logger:  # with what the model runs, read back from it (the config holds what was asked for)
        logger.log_hyperparams(
            {
                **{f"params.{k}": v for k, v in module.budget.as_dict().items()},
                **{f"attention.{k}": v for k, v in module.attention.items() if v is not None},
                "compiled": module.compiled,
            }
        )
    module.run_config = {**config.as_dict(), "wandb_group": wandb_group(config.sweep_name)}
    results = record.start(
        config, module.budget.as_dict(), run.precision, run.batch, module.attention, module.compiled
    )
    results.scoring = module.scoring  # what the metrics compared, and sacreBLEU's signatures
    results.decoding = module.decoding.kwargs()  # the decoding scored (src.eval records it likewise)
    metrics = [*config.data.metrics, "loss"]
    if config.eval_before_training:
        probe = make_trainer(
            config, run.precision, [], logger=False, enable_checkpointing=False, devices=devices
        )
        results.test_before_training = evaluate(probe, module, datamodule)
        before = {"before training": results.test_before_training}
        log.info("test results before training:\n%s", results_table(before, metrics))

    resume_from = record.checkpoint_to_resume(config, out)
    if config.warm_start_from and resume_from is None:  # resuming restores this run's own weights instead
        warm_start(module, config.warm_start_from)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except RuntimeError as err:
        if resume_from and "state_dict" in str(err):
            raise UserError(
                f"checkpoint {resume_from} belongs to another architecture than this run's "
                f"({config.run_name}): {str(err).splitlines()[0]}. Fix: pass a checkpoint of this model, or "
                "resume=false."
            ) from None
        raise
    seconds = time.perf_counter() - start
    module.check_finite(config.skip_nonfinite_max_share)  # the last update too; the skipped share
    stopper = next((c for c in trainer.callbacks if isinstance(c, RunEarlyStopping)), None)
    early = stopper.stopped_step if stopper is not None else None
    budget = int(config.trainer.max_steps or -1)
    # completed: the configured budget trained, or stopped early
    if budget > 0 and trainer.global_step < budget and early is None:
        raise UserError(
            f"training stopped at step {trainer.global_step} of trainer.max_steps={budget}: the epochs ran out first "
            f"(trainer.max_epochs={config.trainer.max_epochs}). Fix: a larger trainer.max_epochs (or null), or "
            f"trainer.max_steps={trainer.global_step}."
        )
    throughput = next((c.summary() for c in trainer.callbacks if isinstance(c, Throughput)), {})
    results.train = record.training_summary(trainer, module, throughput, out, resume_from, seconds)
    reason = stopper.stopping_reason_message if early is not None else None
    results.selection = record.selection(trainer, config, out, early, reason)
    results.data_stats = datamodule.stats()
    results.validation = {
        k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
    }
    if config.average.last:  # the mean of the kept validation checkpoints: checkpoints/average.ckpt
        record.write_average(trainer, out, config.average.last)
    test_ckpt = record.test_checkpoint(trainer, config.test_ckpt, out)
    results.weights = record.tested_weights(test_ckpt, config)  # trained, EMA, or the average of N of them
    results.test = evaluate(trainer, module, datamodule, ckpt_path=test_ckpt)
    record.check_finite_scores(results)  # a NaN loss on validation or test: not a completed run
    results.test_outputs = module.test_outputs  # distinct share, repeated 3-grams, length ratio
    results.test_checkpoint = os.path.relpath(test_ckpt, out) if test_ckpt else None
    results.data_files = record.data_files(config.data)  # local data: changed files make the record stale
    results.started_at, results.finished_at = started, time.time()
    if trainer.is_global_zero:
        record.write_completed(out, results, module.test_predictions, list(config.data.metrics))
        model_dir = None
        if logger and config.logger.log_model:  # the tested weights, as a Hugging Face directory
            model_dir = export(module, out / "hf", module.run_config, results.as_dict())
        log_results_to_wandb(logger, results, out, module.test_predictions, model_dir=model_dir)
    return results


def train_or_skip(cfg: DictConfig) -> float | None:
    """Train unless this run directory already holds a completed run; a failure in a sweep is recorded, not raised.

    The composed config becomes a TrainConfig here, once: every key's rule runs, then those across groups, before
    anything loads; everything below takes the objects.

    Returns:
        The monitored validation metric (what an Optuna sweep optimises), or None.
    """
    out = Path(cfg.output_dir)
    try:
        config = train_config(cfg)
        check_run(config)
        check_environment(config)  # $TMPDIR, W&B's and the Hub's directories: writable
    except UserError as err:
        if not is_multirun():
            raise
        record.write_failed(
            out, identity(cfg), err
        )  # a sweep survives its bad jobs: recorded, the others run
        log.error("%s: %s; the sweep goes on", cfg.run_name, err)
        return None
    done = record.completed_run(config, out)
    if done is not None:  # not run again: this command's run, completed (its results were shown)
        return done.monitored(config.monitor)
    if not is_launching_process():  # the extra processes of a DDP run share their launcher's lock
        return _train_recorded(config, out)
    # one process per run directory. A one-process job of a sweep whose directory another job holds (the same
    # parameters proposed twice, a grid that names one directory twice) waits for it and takes its result; a DDP
    # job is refused, as its other processes would wait for it in vain
    wait = is_multirun() and world_size(config.trainer) == 1
    with record.RunLock(out, wait=wait) as lock:
        done = record.completed_run(config, out, waited=lock.waited)  # under the lock: completed meanwhile?
        if done is not None:
            return done.monitored(config.monitor)
        return _train_recorded(config, out)


def _train_recorded(config: TrainConfig, out: Path) -> float | None:
    try:
        done = train(config)
    except Interrupted as err:
        finish_wandb(failed=True)
        if is_launching_process():
            record.write_interrupted(out, config.run_name, str(err))
        if err.requeued:  # exit without a result: the submitting sweep waits for the job SLURM runs again
            log.warning("interrupted: %s. SLURM runs the job again; it resumes from its checkpoint.", err)
            raise SystemExit(143) from None
        log.warning("interrupted: %s. To resume, run the same command again: %s", err, resume_command())
        if is_multirun():
            return None
        raise SystemExit(143) from None
    except Exception as err:
        finish_wandb(failed=True)  # one W&B run per job, closed and marked failed
        if is_launching_process():
            try:
                record.write_failed(out, config.identity(), err)
            except (OSError, UserError) as again:  # the disk that failed the run may refuse its record too
                log.error("could not record the failure in %s: %s", out, again)
        if not is_multirun():
            raise
        log.error("%s failed (%s); the sweep goes on. Details: %s", config.run_name, err, out / "error.txt")
        return None
    finish_wandb(failed=False)
    return done.monitored(config.monitor)


def resume_command() -> str:
    """The command line of this process, as a user re-types it to resume the run."""
    return shlex.join(["python", "-m", "src.train", *sys.argv[1:]])


@hydra_entry  # Hydra's own errors (an unknown key, a missing option) as one line, exit 2
@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns the monitored validation metric, for Hydra sweepers such as Optuna."""
    with report_user_errors():
        return train_or_skip(cfg)


if __name__ == "__main__":
    main()
