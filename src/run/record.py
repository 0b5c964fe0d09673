"""A run directory, the one owner of its layout: its record (`metrics.json`, a `RunRecord`), whether a run is
finished, where it resumes from, failures, and the one reader (`read_metrics`) that report, compare, the decoding
table, plan, export and the SLURM launcher use. `src.train` and `src.eval` both write through `write_record`.

<run>/metrics.json       the RunRecord (src.run.run_record): status (running | completed | failed | interrupted),
                         what was run (run_name, variant, encoder, decoder, sharing, data, seed, params, precision,
                         attention, compile), `scoring`, `decoding`, and the scores of each evaluated split under its
                         name: `validation` and `test` ({metric: 0-100, loss})
<run>/predictions.jsonl  test predictions (source, reference, prediction), the strings the metrics saw
<run>/checkpoints/       best.ckpt, last.ckpt (each carries the model description and tokenizers)
<run>/error.txt          the traceback of a failed run
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
import zipfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from src.config.data import DataConfig
from src.config.schema import TrainConfig, stored_train_config
from src.metrics.text import scoring_options
from src.run import average
from src.run.run_record import EVALUATED_SPLITS, RunRecord
from src.system.errors import UserError
from src.system.locks import FileLock
from src.system.outputs import atomic_write_text, results_table, write_json

log = logging.getLogger(__name__)


def sweep_job_dir(sweep: dict) -> Path:
    """Where a sweep job writes: `sweep` is its composed config's hydra.sweep ({dir, subdir})."""
    return Path(str(sweep["dir"])) / str(sweep["subdir"])


def read_metrics(out: Path) -> RunRecord | None:
    """A run directory's record (older layouts upgraded), or None where it has no whole metrics.json."""
    return RunRecord.read(out)


def write_record(out: Path, record: RunRecord) -> None:
    """Write `record` as `out/metrics.json`, replaced atomically."""
    write_json(out / "metrics.json", record.as_dict())


def completed(out: Path) -> RunRecord | None:
    """The record of a run directory if that run completed, else None."""
    record = read_metrics(out)
    return record if record is not None and record.completed else None


def finished(out: Path, *, skip_completed: bool = True, resume: bool = True) -> RunRecord | None:
    """The completed run in `out` that a command would not run again (`skip_completed` and `resume` on)."""
    return completed(out) if skip_completed and resume else None


def completed_run(config: TrainConfig, out: Path, waited: bool = False) -> RunRecord | None:
    """The completed run in `out` that this command does not run again (`finished`), checked to be this command's
    (made with the same model and data, its local data files unchanged: else a UserError), its results shown; None
    where there is none, or the command redoes it.

    Args:
        waited: this process waited for another that held `out` (`RunLock(wait=True)`): a run that one completed
            is taken whatever skip_completed and resume say, as it is this sweep's own.
    """
    done = (
        completed(out)
        if waited
        else finished(out, skip_completed=config.skip_completed, resume=config.resume)
    )
    if done is None:
        return None
    check_same_run(
        config,
        recorded_made_with(done),
        f"the completed run in {out}",
        "run this command in its own directory (drop hydra.run.dir=...), or resume=false to train afresh "
        "here (the completed run is kept aside)",
    )
    check_data_unchanged(config.data, out, done)
    log.info(
        "%s: already completed in %s, not run again (skip_completed=false or resume=false to redo it)",
        config.run_name,
        out,
    )
    show_results(done, out, list(config.data.metrics))
    return done


def checkpoint_to_resume(config: TrainConfig, out: Path) -> str | None:
    """`ckpt_path` if given (it must exist), else this run's last checkpoint when `resume` is on; either is checked
    to be whole before training starts. `resume=false` moves the earlier attempt aside (`set_aside`)."""
    if config.ckpt_path:
        path = Path(config.ckpt_path).expanduser()
        if not path.is_file():
            raise UserError(
                f"ckpt_path={config.ckpt_path} does not exist. Fix: point it at a .ckpt file, "
                f"e.g. {out / 'checkpoints' / 'last.ckpt'}, or drop it."
            )
        check_checkpoint_file(
            path, f"ckpt_path={config.ckpt_path}", "point ckpt_path at another checkpoint, or drop it"
        )
        check_same_run(
            config,
            checkpoint_made_with(path),
            f"ckpt_path={config.ckpt_path}",
            f"to start from its weights with this command's settings (a new optimizer, step 0), give "
            f"warm_start_from={config.ckpt_path} instead of ckpt_path; to resume it, use the settings it was made with",
        )
        return str(path)
    last = out / "checkpoints" / "last.ckpt"
    if not config.resume:
        set_aside(out)
        return None
    if not last.is_file():
        return None
    check_checkpoint_file(
        last, str(last), "delete it to start this run afresh, or resume=false (it is kept aside)"
    )
    check_same_run(
        config,
        checkpoint_made_with(last),
        f"the run directory {out} (checkpoints/last.ckpt)",
        "run this command in its own directory (drop hydra.run.dir=...), or resume=false to start afresh here "
        f"(the earlier attempt is kept aside), or warm_start_from={last} in another directory to start from its weights",
    )
    log.info("resuming from %s (resume=false to start afresh)", last)
    return str(last)


def check_checkpoint_file(path: Path, name: str, fix: str) -> None:
    """A checkpoint (a zip archive, as torch.save writes it) whose directory reads to the end; else one UserError.

    Lightning writes checkpoints whole (to a temporary file, then renamed: tests/test_train_faults.py), so a
    damaged one comes from elsewhere (a copy cut short, an older writer): it is named, not loaded into a
    traceback."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{name} is not a whole checkpoint ({err}). Fix: {fix}.") from None
    if not any(n.endswith("data.pkl") for n in names):
        raise UserError(f"{name} is not a checkpoint written by torch.save. Fix: {fix}.")


#: what `set_aside` moves: everything an attempt at a run writes into its directory (Hydra's .hydra/ and the log
#: stay: they describe the command, which is the same)
ATTEMPT_FILES = ("metrics.json", "predictions.jsonl", "checkpoints", "error.txt", "hf", "attempts")


def set_aside(out: Path) -> Path | None:
    """Move an earlier attempt's record and checkpoints, together, into `out/previous-<time>/`, so the directory
    never holds a record that points at checkpoints it no longer has. Nothing is deleted. None if there was none."""
    present = [n for n in ATTEMPT_FILES if (out / n).exists()]
    present += sorted(p.name for p in out.glob("predictions.*.jsonl"))
    if not present:
        return None
    aside = out / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for name in present:
        (out / name).rename(aside / name)
    log.info(
        "resume=false: starting afresh; the earlier attempt (%s) is kept in %s", ", ".join(present), aside
    )
    return aside


#: the data keys that decide which examples a run sees and how they are tokenized (made_with's `data`)
DATA_IDENTITY = (
    "name",
    "loader",
    "path",
    "hub_name",
    "hub_config",
    "hub_revision",
    "splits",
    "source_column",
    "target_column",
    "source_join",
    "target_join",
    "lowercase",
    "max_source_length",
    "max_target_length",
    "limit_train",
    "train_fraction",
    "subset_seed",
    "synthetic",
)


def made_with(config: TrainConfig) -> dict:
    """What a run's weights and examples come from: the model (checkpoints and tokenizers, which sides are
    pretrained, sharing, positions) and the data (source, columns, lengths, subsets). A run directory or a
    checkpoint made with other values holds another run."""
    if config.pretrained_seq2seq:
        model = {"pretrained_seq2seq": config.pretrained_seq2seq}
    else:
        spec = config.model_spec().as_dict()
        # not attn_implementation: it changes how attention is computed, not the weights
        model = {k: v for k, v in spec.items() if k != "attn_implementation"}
    data = config.data.as_dict()
    return {"model": model, "data": {k: data[k] for k in DATA_IDENTITY}}


def differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """`key: before -> now` for every leaf that differs between two `made_with` dicts."""
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_same_run(config: TrainConfig, recorded: dict | None, where: str, fix: str) -> None:
    """Refuse to skip, resume or test `where` (a run directory or a checkpoint) for this command when what it was
    made with (`recorded`: `made_with` of its config) differs from this command's: one UserError listing the
    differences. A run from before the record recorded only its identity's names: those are compared."""
    if not recorded:
        return
    now = made_with(config) if "model" in recorded else identity_names(config.identity())
    changed = differences(recorded, now)
    if changed:
        shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise UserError(
            f"{where} was made with another model or data than this command ({shown}). Fix: {fix}."
        )


def identity_names(identity: dict) -> dict:
    """The names of a run identity (`TrainConfig.identity`, or a record's) that say what model and data it has."""
    return {
        k: identity.get(k) for k in ("encoder", "decoder", "sharing", "data") if identity.get(k) is not None
    }


def recorded_made_with(done: RunRecord) -> dict | None:
    """What a record says its run was made with: `made_with`, else (an older run) its identity's names."""
    if isinstance(done.made_with, dict):
        return done.made_with
    return identity_names(done.identity()) or None


def checkpoint_made_with(path: Path) -> dict | None:
    """`made_with` of the config stored in a checkpoint of src.train (memory-mapped: the weights are not read)."""
    # a damaged file is named by check_checkpoint_file; an older layout has nothing to compare
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    stored = checkpoint.get("run_config") if isinstance(checkpoint, dict) else None
    if not isinstance(stored, dict):
        return None
    try:
        return made_with(stored_train_config(stored))
    except Exception:  # a config of an older layout: nothing to compare
        return None


def start(
    config: TrainConfig,
    budget: dict,
    precision,
    batch: dict,
    attention: dict | None = None,
    compiled: bool = False,
) -> RunRecord:
    """A training run's record as it starts: what is trained, on what, how.

    Args:
        attention: `Seq2SeqModule.attention`: the attn_implementation asked for and what encoder and decoder run,
            read back from the built model.
        compiled: whether the loss pass runs torch.compile'd (`trainer.compile`).
    """
    return RunRecord(
        status="running",
        **config.identity(),
        made_with=made_with(config),  # what resuming or skipping this run directory is checked against
        params=budget,
        precision=str(precision),
        batch=batch,  # examples per optimizer step = per_device x devices x accumulation
        attention=attention,
        compile=compiled,
        weights=config.ema.weights(),
    )


def evaluation(run: TrainConfig, **what) -> RunRecord:
    """An src.eval directory's record as it starts: the trained run it evaluates (`run`, its identity) and `what`
    (model or ckpt_path, params, decoding, scoring); the caller adds each split's scores."""
    weights = average.checkpoint_weights(what.get("ckpt_path"), run.ema.weights())
    return RunRecord(status="running", command="eval", **run.identity(), weights=weights, **what)


def training_summary(
    trainer, module, throughput: dict, out: Path, resume_from: str | None, seconds: float
) -> dict:
    """metrics.json's `train` section: steps, time, `throughput` (the Throughput callback's), skipped steps."""
    section = {
        "steps": trainer.global_step,
        "wall_time_s": round(seconds, 2),
        **throughput,
        "nonfinite_skipped": module.nonfinite_skipped,  # batches skipped for a non-finite loss ...
        "batches": module.train_batches,  # ... of the training batches seen (resumed runs: all attempts)
        "resumed_from": os.path.relpath(resume_from, out) if resume_from else None,
    }
    return {k.removeprefix("train/"): v for k, v in section.items()}


def selection(
    trainer, config: TrainConfig, out: Path, early_stop_step: int | None, reason: str | None
) -> dict:
    """metrics.json's `selection`: the metric that picked best.ckpt and its best value, and why training ended
    (`early_stop_step`: where early stopping ended it, else None)."""
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_score if ckpt is not None else None
    path = ckpt.best_model_path if ckpt is not None else ""
    if early_stop_step is not None:
        stopped_by = "early_stopping"
    else:
        stopped_by = "max_steps" if config.trainer.max_steps not in (None, -1) else "max_epochs"
    return {
        "monitor": config.monitor,
        "mode": config.monitor_mode,
        "best": None if best is None else float(best),
        "best_checkpoint": os.path.relpath(path, out) if path else None,
        "stopped_by": stopped_by,
        "stopped_at_step": trainer.global_step,
        "patience": config.early_stopping.patience,
        "reason": reason,
    }


def check_finite_scores(results: RunRecord) -> None:
    """Refuse to complete a run whose validation or test loss is not finite (its predictions are noise)."""
    for split in EVALUATED_SPLITS:
        loss = results.scores(split).get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            raise UserError(
                f"the {split} loss is {loss}: the model's outputs are not finite, and the run is not completed. "
                "Fix: lower optimizer.lr or raise optimizer.warmup_steps (keep trainer.gradient_clip_val)."
            )


def test_checkpoint(trainer, which: str, out: Path) -> str | None:
    """The checkpoint evaluated on test: `best` or `last` (whichever exists when the other does not), or `average`
    (checkpoints/average.ckpt, `write_average`'s)."""
    if which == "average":
        path = out / "checkpoints" / average.AVERAGE
        if not path.is_file():
            raise UserError(
                f"test_ckpt=average, and no validation checkpoint was kept to average into {path} (training "
                "validated no time). Fix: a trainer.val_check_interval that validates, or test_ckpt=best."
            )
        return str(path)
    ckpt = trainer.checkpoint_callback
    best, last = (ckpt.best_model_path, ckpt.last_model_path) if ckpt is not None else ("", "")
    return (best if which == "best" else last) or last or best or None


def write_average(trainer, out: Path, last: int) -> None:
    """checkpoints/average.ckpt: the mean of the `last` kept validation checkpoints (src.run.average), written by
    the first process while the others wait."""
    if trainer.is_global_zero:
        made = average.average_of_run(out / "checkpoints", last)
        if made is None:
            log.warning("average.last=%d: no validation checkpoint was kept, nothing to average", last)
        else:
            path, entry = made
            log.info(
                "%s: the mean of %d checkpoints (steps %s)",
                os.path.relpath(path, out),
                entry["checkpoints"],
                ", ".join(map(str, entry["steps"])),
            )
    trainer.strategy.barrier("average")


def tested_weights(ckpt_path: str | None, config: TrainConfig) -> dict:
    """metrics.json's `weights` of the test: the run's kind (trained or EMA), or the average the checkpoint is of."""
    return average.checkpoint_weights(ckpt_path, config.ema.weights())


def write_predictions(path: str | Path, rows: list[dict]) -> None:
    """One JSON object a line: source, reference, prediction and, where scored, the strings the metrics saw."""
    keys = ("source", "reference", "prediction", "scored_prediction", "scored_reference")
    lines = (json.dumps({k: r[k] for k in keys if k in r}, ensure_ascii=False) for r in rows)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def write_completed(out: Path, results: RunRecord, predictions: list[dict], metrics: list[str]) -> None:
    results.status = "completed"
    write_predictions(out / "predictions.jsonl", predictions)
    write_record(out, results)
    show_results(results, out, metrics)


def show_results(results: RunRecord, out: Path, metrics: list[str]) -> None:
    shown = {"before training": results.test_before_training, "after training": results.test}
    table = results_table({k: v for k, v in shown.items() if v}, [*metrics, "loss"])
    log.info(
        "test results (%s, %s parameters):\n%s",
        results.run_name,
        f"{results.params['total'] / 1e6:.1f}M",
        table,
    )
    log.info("run directory: %s (metrics.json, predictions.jsonl, checkpoints/)", out)


def write_failed(out: Path, identity: dict, err: BaseException) -> None:
    """Mark the run failed in metrics.json (the grid report shows it) and keep the traceback in error.txt; beside a
    completed record, which is kept, in attempts/ instead.

    Args:
        identity: what the run is (`TrainConfig.identity`, or as much of it as a config that failed its checks
            gives: `src.config.schema.identity`).
    """
    record = RunRecord(status="failed", **identity, error=f"{type(err).__name__}: {err}")
    where = _attempt_dir(out, "failed")
    write_record(where, record)
    atomic_write_text(where / "error.txt", "".join(traceback.format_exception(err)))


def write_interrupted(out: Path, run_name: str, reason: str) -> None:
    """Mark the run interrupted (it resumes from checkpoints/last.ckpt); beside a completed record, in attempts/."""
    record = RunRecord(status="interrupted", run_name=run_name, reason=reason)
    write_record(_attempt_dir(out, "interrupted"), record)


def _attempt_dir(out: Path, what: str) -> Path:
    """Where an attempt that did not complete writes its record: the run directory, unless that holds a completed
    run, whose results a later failed or interrupted attempt must not replace."""
    if completed(out) is None:
        return out
    where = out / "attempts" / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}"
    log.warning("the completed results in %s are kept; this attempt's record is in %s", out, where)
    return where


# ---- one process per run directory ---------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run directory (`FileLock` on `<run>/.lock`), held while one process trains or
    evaluates in it; a second process is refused with the holder's pid and start time, or with `wait` waits for it
    (`waited` then says so: what the holder left in the directory is to be read again)."""

    def __init__(self, out: Path, wait: bool = False):
        self.lock, self.wait, self.waited = FileLock(out / ".lock"), wait, False

    def __enter__(self) -> RunLock:
        if not self.lock.acquire(block=False):
            where, holder = self.lock.path.parent, self.lock.holder()
            if not self.wait:
                raise UserError(
                    f"{where} is in use by {holder}: a run directory takes one process at a time. Fix: wait for "
                    "it to finish (the same command then resumes or skips it), or run with another override for a "
                    "directory of its own."
                )
            log.warning("%s is in use by %s; waiting for it to finish", where, holder)
            self.lock.acquire()
            self.waited = True
        self.lock.mark_held()
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


# ---- the data a run was trained on ---------------------------------------------------------------------------
def data_files(data: DataConfig) -> dict | None:
    """The local data files of a run (data.path): {name: [size, mtime_ns]}; None for hub and synthetic data, whose
    identity is in the config (hence in the run directory's name)."""
    path = data.path
    if not path or not Path(path).expanduser().is_dir():
        return None
    files = sorted(Path(path).expanduser().glob("*.jsonl"))
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def check_data_unchanged(data: DataConfig, out: Path, done: RunRecord) -> None:
    """A completed run whose data.path files changed since is not shown as current: one UserError saying so."""
    recorded, now = done.data_files, data_files(data)
    if recorded is None or now is None or recorded == now:
        return
    changed = sorted(n for n in set(recorded) | set(now) if recorded.get(n) != now.get(n))
    raise UserError(
        f"the data at data.path={data.path} changed since the run in {out} completed ({', '.join(changed)}): "
        "its results are not those of this data. Fix: resume=false to train afresh on it (the earlier run is "
        "kept aside in its directory), or restore the files."
    )


def checkpoint_of(path: Path) -> Path:
    """A checkpoint file, or the checkpoint a run directory was tested with (else its last)."""
    if path.is_file():
        return path
    metrics = path / "metrics.json"
    if metrics.is_file():
        record = read_metrics(path)
        if record is None:
            raise UserError(
                f"{metrics} is not a whole metrics.json (cut short?), so which checkpoint was tested is unknown. "
                f"Fix: give the checkpoint itself, e.g. {path / 'checkpoints' / 'best.ckpt'}."
            )
        tested = record.test_checkpoint
        if tested and (path / tested).is_file():
            return path / tested
    if (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt"
    raise UserError(
        f"{path} is neither a checkpoint nor a run directory with one. "
        "Fix: give outputs/runs/<run> or outputs/runs/<run>/checkpoints/best.ckpt."
    )


# ---- reading a run back ------------------------------------------------------------------------------------
def read_predictions(path: Path) -> tuple[list[str], list[str | list[str]], list[str] | None]:
    """(predictions, references, sources or None) of a predictions file; a bad line is an error naming it."""
    if not path.is_file():
        raise UserError(
            f"{path} does not exist. Fix: give a predictions file, e.g. outputs/runs/<run>/predictions.jsonl"
        )
    predictions, references, sources = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{n} is not JSON ({err}). Fix: one JSON object a line.") from None
        ref = row.get("references", row.get("reference"))
        if "prediction" not in row or ref is None:
            raise UserError(
                f"{path}:{n} lacks `prediction` or a reference (keys: {', '.join(row) or 'none'}). "
                "Fix: give `prediction` and `reference` (a string) or `references` (a list)."
            )
        refs = [ref] if isinstance(ref, str) else ref
        if not isinstance(row["prediction"], str) or not (
            isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs)
        ):
            raise UserError(
                f"{path}:{n}: `prediction` and the reference must be text (prediction is "
                f'{type(row["prediction"]).__name__}). Fix: strings, e.g. "prediction": "" for an empty one.'
            )
        predictions.append(row["prediction"])
        references.append(ref)
        sources.append(row.get("source"))
    if not predictions:
        raise UserError(
            f"{path} holds no predictions. Fix: give a predictions.jsonl with one JSON object a line (prediction, "
            "reference), e.g. outputs/runs/<run>/predictions.jsonl."
        )
    return predictions, references, sources if all(s is not None for s in sources) else None


def run_settings(path: Path) -> dict:
    """How the run whose directory holds `path` was scored: `metrics` and its `SCORING_KEYS`, or {}.

    A src.train run's composed config says it (data.*); an src.eval directory's metrics.json (`scoring`). A run
    made before the canonical form existed (its config names no `scored_text`) was scored as given.
    """
    composed = path.parent / ".hydra" / "config.yaml"
    data = (OmegaConf.load(composed).get("data") or {}) if composed.is_file() else {}
    if data.get("metrics"):
        return {"metrics": list(data.metrics), "scored_text": "as_given", **scoring_options(data)}
    recorded = read_metrics(path.parent)
    scoring = recorded.scoring if recorded is not None else None
    if isinstance(scoring, dict) and scoring.get("metrics"):
        return {"metrics": list(scoring["metrics"]), **scoring_options(scoring)}
    return {}
