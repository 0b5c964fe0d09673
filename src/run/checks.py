"""The keys a user types most, checked before any model or data loads: a bad value fails in a second, not after a
model load, and never runs to a "completed" run that trained nothing.

Each failure is one UserError naming the key, the value given, what is valid and a fix; the commands print it as
`error: ... Fix: ...` and exit 2. `check_config` is `src.train`'s (every key below), `check_eval_config` is
`src.eval`'s (the keys it takes: decoding, batch size, precision, and a `data=` task's keys).

Keys added with `+` to the groups the code reads key by key are refused with the closest real key: `data.*` (the
fields of src.data.datamodule.DataConfig), `data.generation.*` (src.models.decoding.KEYS), `optimizer.*` (the
arguments of src.models.optim.build_optimizer) and `trainer.*` (the arguments of lightning.Trainer, which the
group is passed to, less those the project sets itself).

One rule a key, a few lines each, in the one place a reader scans to learn what is valid; the rules share the few
helpers that word every message the same way.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math

from omegaconf import DictConfig, OmegaConf

from src.models.decoding import check_length_penalty_form
from src.run.batches import per_device_batch_size, refuse_token_budget_with_global_batch
from src.system.errors import UserError
from src.system.trainer_keys import SET_BY_THE_PROJECT, trainer_arguments

_ABSENT = object()

#: what trainer.precision (and src.eval's precision) may be: `auto` (src.system.hardware.resolve_precision), null
#: (Lightning's default) and what lightning.Trainer accepts (lightning.fabric.connector._PRECISION_INPUT)
PRECISIONS = (
    "auto",
    "16-mixed",
    "bf16-mixed",
    "32-true",
    "16-true",
    "bf16-true",
    "64-true",
    "16",
    "bf16",
    "32",
    "64",
    16,
    32,
    64,
    "transformer-engine",
    "transformer-engine-float16",
)

#: the largest seed Lightning's seed_everything takes (numpy's uint32); outside [0, it] it picks a random seed
MAX_SEED = 2**32 - 1


@functools.cache
def data_keys() -> frozenset[str]:
    """The keys data.* may hold: the fields of DataConfig (what the data module and the metrics read)."""
    from dataclasses import fields

    from src.data.datamodule import DataConfig

    return frozenset(f.name for f in fields(DataConfig))


@functools.cache
def optimizer_keys() -> frozenset[str]:
    """The keys optimizer.* may hold: build_optimizer's keyword arguments less those the module gives it."""
    from src.models.optim import build_optimizer

    return frozenset(inspect.signature(build_optimizer).parameters) - {"model", "total_steps", "hidden_size"}


def decoding_keys() -> frozenset[str]:
    from src.models.decoding import KEYS

    return frozenset(KEYS)


# ---- the entry points ------------------------------------------------------------------------------------------
def check_config(cfg: DictConfig) -> None:
    """`src.train`'s config: refuse, before anything loads, a value that would fail late, be ignored, or train
    nothing. Raises the first problem found as a UserError."""
    _check_known_keys(cfg)
    _check_data(cfg)
    _check_optimizer(cfg)
    _check_trainer(cfg)
    _check_attention(cfg)
    _check_seed(cfg)
    _check_run_keys(cfg)
    _check_steps_the_data_allow(cfg)


def check_eval_config(cfg: DictConfig) -> None:
    """`src.eval`'s config: its own keys (eval_batch_size, precision), the decoding (data.generation.*) and, with
    `data=<task>`, that task's data keys."""
    _check_known_keys(cfg, groups=("data",))
    _check_data(cfg, budgets=False)
    _optional_int(
        cfg, "eval_batch_size", 1, "examples per evaluation batch", "eval_batch_size=32 (null: the run's)"
    )
    _check_precision(cfg, "precision", "null (the run's), ")


# ---- what a value may be ---------------------------------------------------------------------------------------
def _get(cfg: DictConfig, key: str):
    """The value at a dotted key, or _ABSENT where the key (or a parent) is missing or `???`."""
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    return _ABSENT if value is None and OmegaConf.is_missing(cfg, key) else value


def _shown(value) -> str:
    """A value as one writes it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if not isinstance(value, str) or value else "''"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _refuse(key: str, value, valid: str, fix: str) -> None:
    raise UserError(f"{key}={_shown(value)} is not valid: {key} is {valid}. Fix: {fix}.")


def _int_at_least(cfg, key: str, low: int, what: str, fix: str, *, nullable: bool = False) -> None:
    value = _get(cfg, key)
    if value is _ABSENT or (value is None and nullable):
        return
    if not _is_int(value) or value < low:
        bound = "a positive integer" if low == 1 else f"an integer >= {low}"
        _refuse(key, value, f"{bound} ({what}){' or null' if nullable else ''}", fix)


def _optional_int(cfg, key: str, low: int, what: str, fix: str) -> None:
    _int_at_least(cfg, key, low, what, fix, nullable=True)


def _check_precision(cfg, key: str, also: str = "") -> None:
    value = _get(cfg, key)
    if (
        value is _ABSENT
        or value is None
        or (isinstance(value, str) or _is_int(value))
        and value in PRECISIONS
    ):
        return
    names = ", ".join(str(p) for p in PRECISIONS if not isinstance(p, int))
    _refuse(key, value, f"{also}one of {names}", f"{key}=auto (bf16-mixed where it is fast, else 32-true)")


# ---- keys the code never reads ---------------------------------------------------------------------------------
def _closest(key: str, known) -> str | None:
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown(group: str, key: str, value, known, what: str) -> None:
    close = _closest(key, known)
    fix = f"{group}.{close}={_shown(value)} (the closest key)" if close else f"drop +{group}.{key}"
    raise UserError(
        f"+{group}.{key}={_shown(value)}: {key} is not a key of {group}: {what}, so an added key would be "
        f"ignored or fail only after the model loads. Fix: {fix}; --cfg job lists the keys."
    )


def _check_known_keys(cfg: DictConfig, groups=("trainer", "data", "optimizer")) -> None:
    """No key under trainer / data / data.generation / optimizer that the code does not read."""
    readers = {
        "trainer": (trainer_arguments, "trainer.* are the arguments of lightning.Trainer"),
        "data": (data_keys, "the code reads the keys of conf/data_common/seq2seq.yaml"),
        "optimizer": (optimizer_keys, "the code reads the keys of conf/optimizer/*.yaml"),
    }
    for group in groups:
        node = cfg.get(group) if isinstance(cfg, DictConfig) else None
        if not isinstance(node, DictConfig):
            continue
        known, what = readers[group]
        for key in node:
            if group == "trainer" and key in SET_BY_THE_PROJECT:
                raise UserError(
                    f"trainer.{key} is set by the project, not from the trainer group: a value there would be "
                    f"replaced without a word. Fix: use {SET_BY_THE_PROJECT[key]}."
                )
            if key not in known():
                _unknown(group, key, _get(node, key), known(), what)
    generation = _get(cfg, "data.generation")
    if isinstance(generation, DictConfig):
        for key in generation:
            if key not in decoding_keys():
                _unknown(
                    "data.generation",
                    key,
                    _get(generation, key),
                    decoding_keys(),
                    "the decoding keys are src/models/decoding.py's",
                )


# ---- the groups ------------------------------------------------------------------------------------------------
def _check_data(cfg: DictConfig, budgets: bool = True) -> None:
    if not isinstance(_get(cfg, "data"), DictConfig):
        return
    batch, total = _get(cfg, "data.batch_size"), _get(cfg, "data.global_batch_size")
    _optional_int(
        cfg,
        "data.global_batch_size",
        1,
        "examples per optimizer step over all devices",
        "data.global_batch_size=256, or null (data.batch_size decides)",
    )
    _optional_int(
        cfg,
        "data.max_tokens",
        1,
        "padded tokens per training batch, examples x (longest source + longest label); null: data.batch_size",
        "data.max_tokens=4096, or null (batches of data.batch_size examples)",
    )
    if isinstance(_get(cfg, "data"), DictConfig):
        refuse_token_budget_with_global_batch(cfg.data)
    valid = "examples per device per forward pass; null only with data.global_batch_size set"
    if (
        batch is None and total in (None, _ABSENT) and budgets
    ):  # src.eval trains nothing: it needs no batch_size
        _refuse("data.batch_size", batch, f"a positive integer ({valid})", "data.batch_size=16")
    if batch is not None:
        _int_at_least(cfg, "data.batch_size", 1, valid, "data.batch_size=16")
    eval_batch, valid = (
        _get(cfg, "data.eval_batch_size"),
        "examples per evaluation batch; null: data.batch_size's",
    )
    if eval_batch is None and not _is_int(batch):  # null falls back to data.batch_size, when that is a number
        _refuse(
            "data.eval_batch_size",
            eval_batch,
            f"a positive integer ({valid}, when that is set)",
            "data.eval_batch_size=64",
        )
    if eval_batch is not None:
        _int_at_least(cfg, "data.eval_batch_size", 1, valid, "data.eval_batch_size=64")
    for side, low in (("source", 3), ("target", 2)):  # [CLS] x [SEP]; one token and EOS
        _int_at_least(
            cfg,
            f"data.max_{side}_length",
            low,
            f"the {side} length in tokens, special tokens included",
            f"data.max_{side}_length=128",
        )
    _optional_int(
        cfg, "data.limit_train", 1, "the first N training examples; null: all", "data.limit_train=null"
    )
    _optional_int(
        cfg,
        "data.limit_eval",
        1,
        "the first N validation and test examples; null: all",
        "data.limit_eval=null",
    )
    _optional_int(
        cfg,
        "data.validation_size",
        1,
        "a random subset of N validation examples; null: all",
        "data.validation_size=null",
    )
    fraction = _get(cfg, "data.train_fraction")
    if fraction not in (_ABSENT, None) and not (_is_number(fraction) and 0 < fraction <= 1):
        _refuse(
            "data.train_fraction",
            fraction,
            "a share in (0, 1] of the training split, or null",
            "data.train_fraction=0.1, or null for all",
        )
    _int_at_least(cfg, "data.num_workers", 0, "data loader worker processes", "data.num_workers=0")
    _optional_int(
        cfg,
        "data.generation.num_beams",
        1,
        "beams of beam search; 1: greedy; null: generate's default",
        "data.generation.num_beams=4",
    )
    _optional_int(
        cfg,
        "data.generation.max_new_tokens",
        1,
        "the longest output, in tokens; null: generate's default",
        "data.generation.max_new_tokens=128",
    )
    form = _get(cfg, "data.generation.length_penalty_form")
    if form is not _ABSENT:
        check_length_penalty_form(form)


def _check_optimizer(cfg: DictConfig) -> None:
    if not isinstance(_get(cfg, "optimizer"), DictConfig):
        return
    name = _get(cfg, "optimizer.name")
    if name not in (_ABSENT, "adam_rsqrt", "adamw_linear"):
        _refuse(
            "optimizer.name",
            name,
            "adam_rsqrt or adamw_linear",
            "optimizer=adam_rsqrt or optimizer=adamw_linear",
        )
    lr = _get(cfg, "optimizer.lr")
    if lr is not _ABSENT and not (_is_number(lr) and lr > 0):
        _refuse("optimizer.lr", lr, "a positive number (the peak learning rate)", "optimizer.lr=5e-5")
    low = 1 if name == "adam_rsqrt" else 0  # the rsqrt schedule divides by the warmup
    why = "optimizer steps of linear warmup" + ("; adam_rsqrt's schedule divides by it" if low else "")
    _int_at_least(cfg, "optimizer.warmup_steps", low, why, "optimizer.warmup_steps=1000")
    decay = _get(cfg, "optimizer.weight_decay")
    if decay is not _ABSENT and not (_is_number(decay) and decay >= 0):
        _refuse("optimizer.weight_decay", decay, "a number >= 0", "optimizer.weight_decay=0.01")


def _check_trainer(cfg: DictConfig) -> None:
    if not isinstance(_get(cfg, "trainer"), DictConfig):
        return
    steps, epochs = _get(cfg, "trainer.max_steps"), _get(cfg, "trainer.max_epochs")
    epochs = None if epochs is _ABSENT else epochs
    if steps is not _ABSENT:
        if steps == 0 and _is_int(steps):
            raise UserError(
                "trainer.max_steps=0 trains nothing. Fix: a positive number of steps, e.g. trainer.max_steps=1000 "
                "(or -1 with trainer.max_epochs=N: the epochs decide)."
            )
        if not _is_int(steps) or steps < -1:
            _refuse(
                "trainer.max_steps",
                steps,
                "a positive integer (optimizer steps), or -1 (trainer.max_epochs decides)",
                "trainer.max_steps=1000",
            )
    if epochs is not None and (not _is_int(epochs) or epochs < -1 or epochs == 0):
        if epochs == 0 and _is_int(epochs):
            raise UserError(
                "trainer.max_epochs=0 trains nothing. Fix: a positive number of epochs, or null (trainer.max_steps "
                "decides)."
            )
        _refuse(
            "trainer.max_epochs",
            epochs,
            "a positive integer, -1 (no epoch limit) or null (trainer.max_steps decides)",
            "trainer.max_epochs=null",
        )
    if steps == -1 and epochs in (None, -1):
        never = "would never stop" if epochs == -1 else "would train for Lightning's default of 1000 epochs"
        raise UserError(
            f"trainer.max_steps=-1 leaves the budget to trainer.max_epochs, which is {_shown(epochs)}: the run {never}. "
            "Fix: trainer.max_steps=N (a positive number of steps), or trainer.max_epochs=N."
        )
    limit = _get(cfg, "trainer.limit_train_batches")
    if limit is not _ABSENT and limit is not None and _is_number(limit) and limit == 0:
        raise UserError(
            f"trainer.limit_train_batches={_shown(limit)} trains nothing. Fix: null (every batch), a number of "
            "batches, or a share in (0, 1]."
        )
    _int_at_least(
        cfg,
        "trainer.accumulate_grad_batches",
        1,
        "forward passes per optimizer step",
        "trainer.accumulate_grad_batches=1",
    )
    interval = _get(cfg, "trainer.val_check_interval")
    if interval not in (_ABSENT, None):
        ok = (_is_int(interval) and interval >= 1) or (
            isinstance(interval, float) and math.isfinite(interval) and 0 < interval <= 1
        )
        if not ok:
            _refuse(
                "trainer.val_check_interval",
                interval,
                "a positive integer (validate every N training steps) or a share of an epoch in (0, 1]",
                "trainer.val_check_interval=200",
            )
    _check_precision(cfg, "trainer.precision")
    clip = _get(cfg, "trainer.gradient_clip_val")
    if clip not in (_ABSENT, None) and not (_is_number(clip) and math.isfinite(clip) and clip >= 0):
        _refuse(
            "trainer.gradient_clip_val",
            clip,
            "a gradient norm >= 0 to clip to (0 or null: no clipping)",
            "trainer.gradient_clip_val=1.0",
        )
    compile_ = _get(cfg, "trainer.compile")
    if compile_ not in (_ABSENT, None) and not isinstance(compile_, bool):
        _refuse(
            "trainer.compile",
            compile_,
            "true (torch.compile the model's loss pass) or false",
            "trainer.compile=false (the default)",
        )


#: precisions whose attention inputs are fp32 or fp64, which FlashAttention-2 does not take
FULL_PRECISIONS = ("32-true", "32", "64-true", "64")


def _check_attention(cfg: DictConfig) -> None:
    """attn_implementation: one of src.models.spec.ATTENTION (null: sdpa); flash_attention_2 only in fp16/bf16
    (not trainer.precision=32-true), with the flash_attn package and a CUDA device (not trainer.accelerator=cpu)."""
    from src.models.spec import ATTENTION, check_attention

    value = _get(cfg, "attn_implementation")
    if value in (_ABSENT, None):
        return
    if value not in ATTENTION:
        _refuse(
            "attn_implementation",
            value,
            f"one of {', '.join(ATTENTION)}",
            "attn_implementation=sdpa (the default)",
        )
    if value != "flash_attention_2":
        return
    precision = _get(cfg, "trainer.precision")
    if str(precision) in FULL_PRECISIONS:
        raise UserError(
            f"attn_implementation=flash_attention_2 computes in fp16/bf16 only, and trainer.precision={precision} "
            "gives it fp32. Fix: trainer.precision=bf16-mixed (or auto, bf16-mixed on a GPU), or "
            "attn_implementation=sdpa."
        )
    check_attention(value, cuda=False if _get(cfg, "trainer.accelerator") == "cpu" else None)


def _check_run_keys(cfg: DictConfig) -> None:
    """The run-level keys Lightning or the record would take up late: monitor_mode, skip_nonfinite_max_share."""
    mode = _get(cfg, "monitor_mode")
    if mode not in (_ABSENT, "min", "max"):
        _refuse("monitor_mode", mode, "min or max (for the `monitor` metric)", "monitor_mode=min")
    share = _get(cfg, "skip_nonfinite_max_share")
    if share is not _ABSENT and not (_is_number(share) and 0 <= share <= 1):
        _refuse(
            "skip_nonfinite_max_share",
            share,
            "a share in [0, 1] of training batches a run may skip and still complete",
            "skip_nonfinite_max_share=0.1",
        )
    if _get(cfg, "ckpt_path") not in (_ABSENT, None) and _get(cfg, "warm_start_from") not in (_ABSENT, None):
        raise UserError(
            "ckpt_path and warm_start_from are both set: ckpt_path resumes a run (its optimizer and step), "
            "warm_start_from starts a new one from its weights. Fix: set one of them."
        )


def _check_seed(cfg: DictConfig) -> None:
    seed = _get(cfg, "seed")
    if seed is not _ABSENT and not (_is_int(seed) and 0 <= seed <= MAX_SEED):
        _refuse(
            "seed",
            seed,
            f"an integer in [0, {MAX_SEED}] (outside it Lightning would pick a random seed)",
            "seed=42",
        )


# ---- budgets the data cannot fill ------------------------------------------------------------------------------
def _world_size(cfg: DictConfig) -> int | None:
    """Processes of the run when the config says it (trainer.devices a count or a list), else None (auto, -1)."""
    devices, nodes = _get(cfg, "trainer.devices"), _get(cfg, "trainer.num_nodes")
    nodes = 1 if nodes in (_ABSENT, None) else nodes
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if OmegaConf.is_list(devices) or isinstance(devices, list | tuple):
        devices = len(devices)
    if not (_is_int(devices) and devices >= 1 and _is_int(nodes) and nodes >= 1):
        return None
    return devices * nodes


def _training_examples_at_most(cfg: DictConfig) -> tuple[int, str] | None:
    """An upper bound of the training examples that the config alone shows, with what sets it; None if none."""
    bounds = []
    limit = _get(cfg, "data.limit_train")
    if _is_int(limit):
        bounds.append((limit, f"data.limit_train={limit}"))
    synthetic = _get(cfg, "data.synthetic.num_train")
    if (
        _get(cfg, "data.loader") == "synthetic"
        and _get(cfg, "data.path") in (None, _ABSENT)
        and _is_int(synthetic)
    ):
        bounds.append((synthetic, f"data.synthetic.num_train={synthetic}"))
        fraction = _get(cfg, "data.train_fraction")
        if _is_number(fraction) and 0 < fraction <= 1:
            bounds.append((max(1, round(synthetic * fraction)), f"data.train_fraction={fraction}"))
    return min(bounds) if bounds else None


def _check_steps_the_data_allow(cfg: DictConfig) -> None:
    """Refuse a run the data cannot give its steps: no batch for some process (nothing trains), or fewer optimizer
    steps in trainer.max_epochs epochs than trainer.max_steps (the run would end early). Only where the config
    shows an upper bound of the training examples (data.limit_train, the synthetic task's size); the batches keep
    their last, partial batch (no drop_last), so an epoch has ceil(examples / batch) of them."""
    if not isinstance(_get(cfg, "trainer"), DictConfig) or not isinstance(_get(cfg, "data"), DictConfig):
        return
    world = _world_size(cfg)
    accumulation = _get(cfg, "trainer.accumulate_grad_batches")
    accumulation = 1 if accumulation in (_ABSENT, None) else accumulation
    if world is None:
        return

    batch = per_device_batch_size(cfg.data, world, accumulation)
    bound = _training_examples_at_most(cfg)
    if bound is None or _get(cfg, "data.max_tokens") not in (_ABSENT, None):
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
    steps, epochs = _get(cfg, "trainer.max_steps"), _get(cfg, "trainer.max_epochs")
    if not (_is_int(epochs) and epochs >= 1 and _is_int(steps) and steps >= 1):
        return
    per_epoch = math.ceil(per_process / accumulation)  # the last, partial accumulation steps too
    if epochs * per_epoch < steps:
        raise UserError(
            f"trainer.max_epochs={epochs} ends the run after at most {epochs * per_epoch} optimizer steps "
            f"({source}: {batches} batch(es) of {batch} an epoch, {per_process} per process, "
            f"trainer.accumulate_grad_batches={accumulation}), before trainer.max_steps={steps}. "
            f"Fix: trainer.max_epochs=null (the steps decide), or trainer.max_steps={epochs * per_epoch}."
        )
