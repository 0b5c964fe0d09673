"""The rules across config groups, checked before any model or data loads: a budget the data cannot fill, a global
batch the devices cannot split, an attention the precision or the machine cannot run. Every rule of one key, and
of the keys of one group, stands beside its field in the group's schema (src/config/); these are the few that
read several groups, each one UserError naming the keys, the values and a fix (`error: ... Fix: ...`, exit 2).
"""

from __future__ import annotations

import math

from src.config.data import per_device_batch_size
from src.config.schema import TrainConfig
from src.models.spec import check_attention
from src.system.errors import UserError
from src.system.keys import is_int, is_number, refuse

#: precisions whose attention inputs are fp32 or fp64, which FlashAttention-2 does not take
FULL_PRECISIONS = ("32-true", "32", "64-true", "64")


def check_run(config: TrainConfig) -> None:
    """`src.train`'s rules across groups; raises the first problem found as a UserError."""
    _check_monitor(config)
    _check_average(config)
    _check_batch(config)
    _check_attention(config)
    _check_steps_the_data_allow(config)


def _check_monitor(config: TrainConfig) -> None:
    """`monitor` names the validation loss or one of the task's metrics, and `monitor_mode` ranks it the right way
    round (a generated metric is better higher, the loss lower): else best.ckpt, early stopping and an Optuna sweep
    would chase the worst checkpoint."""
    names = ["val/loss", *(f"val/{m}" for m in config.data.metrics)]
    if config.monitor not in names:
        refuse(
            "monitor",
            config.monitor,
            f"val/loss or a metric of the task: {', '.join(names)}",
            f"monitor={names[1] if len(names) > 1 else names[0]}",
        )
    mode = "max" if config.monitors_generation else "min"
    if config.monitor_mode != mode:
        better = "higher" if mode == "max" else "lower"
        raise UserError(
            f"monitor={config.monitor} is better {better}, and monitor_mode={config.monitor_mode} would keep the "
            f"worst checkpoint as best.ckpt. Fix: monitor_mode={mode}."
        )


def _check_average(config: TrainConfig) -> None:
    """test_ckpt=average tests checkpoints/average.ckpt, which only average.last >= 1 writes."""
    if config.test_ckpt == "average" and config.average.last < 1:
        raise UserError(
            "test_ckpt=average tests the mean of the last validation checkpoints, and average.last=0 keeps none. "
            "Fix: average.last=5 (or test_ckpt=best)."
        )


def _check_batch(config: TrainConfig) -> None:
    """Training needs a batch: data.batch_size, or data.global_batch_size to derive it from (src.eval, which
    trains nothing, takes a task whose batch_size is null)."""
    if config.data.batch_size is None and config.data.global_batch_size is None:
        refuse(
            "data.batch_size",
            None,
            "a positive integer (examples per device per forward pass; null only with data.global_batch_size set)",
            "data.batch_size=16",
        )


def _check_attention(config: TrainConfig) -> None:
    """flash_attention_2 only in fp16/bf16 (not trainer.precision=32-true), with the flash_attn package and a CUDA
    device (not trainer.accelerator=cpu)."""
    if config.attn_implementation != "flash_attention_2":
        return
    precision = config.trainer.precision
    if str(precision) in FULL_PRECISIONS:
        raise UserError(
            f"attn_implementation=flash_attention_2 computes in fp16/bf16 only, and trainer.precision={precision} "
            "gives it fp32. Fix: trainer.precision=bf16-mixed (or auto, bf16-mixed on a GPU), or "
            "attn_implementation=sdpa."
        )
    check_attention("flash_attention_2", cuda=False if config.trainer.accelerator == "cpu" else None)


def world_size(trainer) -> int | None:
    """Processes of the run when the config says it (trainer.devices a count or a list), else None (auto, -1)."""
    devices, nodes = trainer.devices, trainer.num_nodes
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, list | tuple):
        devices = len(devices)
    if not (is_int(devices) and devices >= 1 and is_int(nodes) and nodes >= 1):
        return None
    return devices * nodes


def _training_examples_at_most(config: TrainConfig) -> tuple[int, str] | None:
    """An upper bound of the training examples that the config alone shows, with what sets it; None if none."""
    data, bounds = config.data, []
    if is_int(data.limit_train):
        bounds.append((data.limit_train, f"data.limit_train={data.limit_train}"))
    if data.loader == "synthetic" and data.path is None and data.synthetic is not None:
        size = data.synthetic.num_train
        bounds.append((size, f"data.synthetic.num_train={size}"))
        fraction = data.train_fraction
        if is_number(fraction) and 0 < fraction <= 1:
            bounds.append((max(1, round(size * fraction)), f"data.train_fraction={fraction}"))
    return min(bounds) if bounds else None


def _check_steps_the_data_allow(config: TrainConfig) -> None:
    """Refuse a run the data cannot give its steps: no batch for some process (nothing trains), or fewer optimizer
    steps in trainer.max_epochs epochs than trainer.max_steps (the run would end early). Only where the config
    shows an upper bound of the training examples (data.limit_train, the synthetic task's size); the batches keep
    their last, partial batch (no drop_last), so an epoch has ceil(examples / batch) of them."""
    trainer = config.trainer
    world = world_size(trainer)
    if world is None:
        return
    accumulation = trainer.accumulate_grad_batches
    batch = per_device_batch_size(config.data, world, accumulation)
    bound = _training_examples_at_most(config)
    if bound is None or config.data.max_tokens is not None:
        return  # token-budget batches: how many the lengths decide, which the config does not show
    examples, source = bound
    batches = math.ceil(examples / batch)
    per_process = batches // world  # each process takes every world-th batch, all the same number
    if per_process == 0:
        need = (world - 1) * batch + 1
        raise UserError(
            f"{source} makes at most {batches} batch(es) of {batch}, fewer than the run's {world} processes "
            f"(trainer.devices x trainer.num_nodes): each process would get none, and nothing would train. "
            f"Fix: {source.split('=')[0]}={need} or more (at least one batch a process), or fewer devices."
        )
    steps, epochs = trainer.max_steps, trainer.max_epochs
    if not (is_int(epochs) and epochs >= 1 and is_int(steps) and steps >= 1):
        return
    per_epoch = math.ceil(per_process / accumulation)  # the last, partial accumulation steps too
    if epochs * per_epoch < steps:
        raise UserError(
            f"trainer.max_epochs={epochs} ends the run after at most {epochs * per_epoch} optimizer steps "
            f"({source}: {batches} batch(es) of {batch} an epoch, {per_process} per process, "
            f"trainer.accumulate_grad_batches={accumulation}), before trainer.max_steps={steps}. "
            f"Fix: trainer.max_epochs=null (the steps decide), or trainer.max_steps={epochs * per_epoch}."
        )
