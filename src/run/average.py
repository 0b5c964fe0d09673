"""The mean of a run's last N checkpoints (fairseq's average_checkpoints): its weights, in a checkpoint every command
takes.

With `average.last=N` a training run keeps the checkpoint of each of its last N validations (weights only,
`checkpoints/step-<step>.ckpt`, `src.run.callbacks.KeepForAverage`) and writes their mean to `checkpoints/average.ckpt` when training
ends; `test_ckpt=average` tests it. `python -m src.average` averages the kept checkpoints of a run again (fewer of
them), or any checkpoints of one run. An averaged checkpoint is the newest one's, with the mean weights and an
`averaged` entry (the steps and files averaged): src.eval, src.export and src.predict load it as any other, and
metrics.json's `weights` says "average" with the steps.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from src.models.restore import CHECKPOINT_FIX, read_checkpoint
from src.system.errors import UserError
from src.system.outputs import atomic_file

#: a kept validation checkpoint: checkpoints/step-0000200.ckpt (7 digits: names sort by step)
STEP = re.compile(r"step-(\d+)\.ckpt")
AVERAGE = "average.ckpt"
#: what an averaged checkpoint leaves out of the newest one's: the state of training, not of the weights averaged
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "callbacks", "current_model_state", "averaging_state")


def step_path(dirpath: str | Path, step: int) -> Path:
    return Path(dirpath) / f"step-{step:07d}.ckpt"


def kept(dirpath: str | Path) -> list[tuple[int, Path]]:
    """The kept validation checkpoints of a checkpoint directory, (step, path), oldest first."""
    here = Path(dirpath)
    if not here.is_dir():
        return []
    found = ((STEP.fullmatch(p.name), p) for p in here.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def average(paths: list[Path], out: Path) -> dict:
    """Write the mean of the checkpoints `paths` (one run's; oldest first) to `out`, atomically; returns its
    `averaged` entry: {checkpoints, steps, files}.

    Floating-point tensors are averaged in float64 and stored in their own dtype; the others (integer buffers) must
    be equal in every checkpoint. The newest checkpoint gives everything else (the run's config, architecture,
    tokenizers), without the state of training (`TRAINING_STATE`)."""
    if not paths:
        raise UserError(
            "no checkpoints to average. Fix: give a run that kept some (average.last=N) or .ckpt files."
        )
    sums: dict[str, torch.Tensor] = {}
    steps, newest = [], None
    for path in paths:
        ckpt = load(path)
        state = ckpt["state_dict"]
        if newest is not None and state.keys() != newest["state_dict"].keys():
            raise UserError(
                f"{path} holds other weights than {paths[0]} (another model). Fix: average checkpoints of one run."
            )
        for name, tensor in state.items():
            if not tensor.is_floating_point():
                if newest is not None and not torch.equal(tensor, newest["state_dict"][name]):
                    raise UserError(
                        f"{path}'s {name} differs from {paths[0]}'s. Fix: average checkpoints of one run."
                    )
                continue
            if name in sums and sums[name].shape != tensor.shape:
                raise UserError(
                    f"{path}'s {name} is {tuple(tensor.shape)}, not {tuple(sums[name].shape)}. Fix: average "
                    "checkpoints of one run."
                )
            sums[name] = sums[name] + tensor.double() if name in sums else tensor.double()
        steps.append(int(ckpt.get("global_step", -1)))
        newest = ckpt
    state = newest["state_dict"]
    for name, total in sums.items():
        state[name] = (total / len(paths)).to(state[name].dtype)
    entry = {"checkpoints": len(paths), "steps": steps, "files": [p.name for p in paths]}
    written = {k: v for k, v in newest.items() if k not in TRAINING_STATE}
    written["averaged"] = entry
    with atomic_file(out) as f:
        torch.save(written, f)
    return entry


def load(path: Path) -> dict:
    """A checkpoint of src.train with its weights (`read_checkpoint`'s refusals, then one for a dict without)."""
    ckpt = read_checkpoint(path)
    if "state_dict" not in ckpt:
        raise UserError(
            f"{path} is not a checkpoint written by src.train (no state_dict). Fix: {CHECKPOINT_FIX}."
        )
    return ckpt


def checkpoint_weights(path: str | Path | None, run_weights: dict) -> dict:
    """metrics.json's `weights` of scores computed with the checkpoint `path` of a run whose checkpoints hold
    `run_weights` (its trained weights, or with ema.decay their moving average): an averaged checkpoint is the average
    of the trained weights of the steps it names; a kept step checkpoint of an EMA run holds the trained weights
    (Lightning puts the average in a checkpoint's state_dict, and the trained ones under `current_model_state`, only
    in full checkpoints)."""
    if not path:
        return run_weights

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # the weights are not read
    except Exception:  # noqa: BLE001  not ours to judge here: loading it reports what is wrong
        return run_weights
    if not isinstance(ckpt, dict):
        return run_weights
    if ckpt.get("averaged"):
        entry = ckpt["averaged"]
        return {"kind": "average", "checkpoints": entry["checkpoints"], "steps": entry["steps"]}
    if run_weights.get("kind") == "ema" and "current_model_state" not in ckpt:
        return {"kind": "trained"}
    return run_weights


def average_of_run(dirpath: str | Path, last: int, out: Path | None = None) -> tuple[Path, dict] | None:
    """The mean of the newest `last` kept checkpoints of a checkpoint directory, written to `out` (default
    average.ckpt there); None when none was kept."""
    chosen = [p for _, p in kept(dirpath)][-last:]
    if not chosen:
        return None
    out = out or Path(dirpath) / AVERAGE
    return out, average(chosen, out)
