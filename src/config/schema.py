"""The whole config of each command, typed: `TrainConfig` (python -m src.train) and `EvalConfig` (src.eval), made
of the groups' schemas. Hydra composes conf/ onto them (`register`: conf/train.yaml and conf/eval.yaml name them
first in their defaults), so a misspelt key, a value of the wrong type or a missing one fails as the config
composes, with the key's path; `train_config` / `eval_config` then make the objects, which runs every key's rule
(src.system.keys), before anything loads. The rules across groups (a budget the data cannot fill, the paper's
protocol) are src.config.checks'.

    python -m src.train --cfg job     # every key, with the defaults written here
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import operator
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from src.config.data import DataConfig
from src.config.model import DecoderConfig, EncoderConfig, PretrainedUsage, SharingConfig, model_spec
from src.config.optimizer import OptimizerConfig
from src.config.trainer import SET_BY_THE_PROJECT, TrainerConfig, precision_rule, set_by_the_project
from src.models.decoding import DecodingOverride
from src.models.spec import ATTENTION, ModelSpec
from src.system.errors import UserError
from src.system.keys import (
    Checked,
    Rule,
    at_least,
    closest,
    is_int,
    is_number,
    key,
    one_of,
    rules,
    share,
    shown,
)

#: the largest seed Lightning's seed_everything takes (numpy's uint32); outside [0, it] it picks a random seed
MAX_SEED = 2**32 - 1


@dataclass
class LoggerConfig(Checked):
    """The `logger=` group: where metrics go besides metrics.json (wandb, tensorboard, csv or none)."""

    PREFIX: ClassVar[str] = "logger"

    kind: str = key("none", one_of(("wandb", "tensorboard", "csv", "none"), fix="logger=wandb"))
    project: str = "warmstart"  # W&B's project and entity
    entity: Optional[str] = None  # noqa: UP045
    # W&B: auto = online with credentials and a reachable service, else offline; online | offline | disabled
    mode: str = "auto"
    log_model: bool = False  # true: export the tested model (<run>/hf, as python -m src.export) and upload it
    examples: int = 0  # validation examples logged as a table at each validation


#: what a run is (metrics.json, the report, W&B's tags): each name, and the key it is read from
IDENTITY = {
    "run_name": "run_name",
    "variant": "variant",
    "encoder": "encoder.name",
    "decoder": "decoder.name",
    "sharing": "sharing.mode",
    "data": "data.name",
    "seed": "seed",
}


def identity(config) -> dict:
    """`IDENTITY` of a TrainConfig, or of a composed config that a key's rule kept from becoming one (what the
    failed record of a sweep job names)."""
    return {name: operator.attrgetter(path)(config) for name, path in IDENTITY.items()}


@dataclass
class EarlyStoppingConfig(Checked):
    """Stop the run when `monitor` has not improved for `patience` validations (Lightning's EarlyStopping)."""

    PREFIX: ClassVar[str] = "early_stopping"

    patience: Optional[int] = key(  # noqa: UP045  validations without an improvement; null: never stop early
        None,
        at_least(
            1,
            "validations without an improvement of `monitor`; null: never stop early",
            nullable=True,
            fix="{key}=5",
        ),
    )
    min_delta: float = key(  # the least change of `monitor` that counts as an improvement
        0.0,
        Rule(
            "a number >= 0 (the least change that counts as an improvement)",
            lambda v: is_number(v) and v >= 0,
            fix="{key}=0",
        ),  # fmt: skip
    )


@dataclass
class EMAConfig(Checked):
    """An exponential moving average of the weights (Lightning's EMAWeightAveraging): what validation, best.ckpt,
    the test and every later command use."""

    PREFIX: ClassVar[str] = "ema"

    decay: Optional[float] = key(  # noqa: UP045  the average's decay per optimizer step; null: no average
        None,
        Rule(
            "a number in (0, 1): the weight the average keeps at each step (0.999: about the last 1000 steps)",
            lambda v: is_number(v) and 0 < v < 1,
            nullable=True,
            fix="{key}=0.999",
        ),
    )
    start_step: int = key(0, at_least(0, "the optimizer step the average starts at", fix="{key}=0"))

    def weights(self) -> dict:
        """metrics.json's `weights`: which weights the scores are of."""
        if self.decay is None:
            return {"kind": "trained"}
        return {"kind": "ema", "decay": self.decay, "start_step": self.start_step}


@dataclass
class AverageConfig(Checked):
    """The mean of the last N validation checkpoints (fairseq's checkpoint averaging): kept as
    checkpoints/step-<step>.ckpt, averaged into checkpoints/average.ckpt when training ends (src.run.average)."""

    PREFIX: ClassVar[str] = "average"

    last: int = key(0, at_least(0, "validation checkpoints kept and averaged; 0: none", fix="{key}=5"))


@dataclass
class TrainConfig(Checked):
    """python -m src.train: the run-level keys, then each group's."""

    variant: Optional[str] = None  # noqa: UP045  set by variant=... (the paper's names: bert2bert, bertshare, ...)
    # the checkpoint behind each family option: encoder=bert / decoder=bert, ... (rnd2rnd: the architecture too)
    checkpoints: Dict[str, str] = key(  # noqa: UP006
        factory=lambda: {"bert": "bert-base-uncased", "roberta": "roberta-base", "gpt2": "gpt2"}
    )
    # start from a whole saved model instead of encoder=/decoder= (an exported directory, or a Hub
    # EncoderDecoderModel such as google/roberta2roberta_L-24_cnn_daily_mail)
    pretrained_seq2seq: Optional[str] = None  # noqa: UP045
    pretrained_usage: PretrainedUsage = key(factory=PretrainedUsage)  # null: its model card's
    # attention of encoder, decoder and cross-attention: sdpa, eager, flash_attention_2 (the flash_attn package, a
    # CUDA GPU, bf16/fp16), auto (transformers' pick); metrics.json's `attention` records what the model runs
    attn_implementation: Optional[str] = key(  # noqa: UP045
        "sdpa",
        one_of(ATTENTION, f"one of {', '.join(ATTENTION)}", nullable=True, fix="{key}=sdpa (the default)"),
    )
    seed: int = key(  # everything: weights of random sides, data order, dropout
        42,
        Rule(
            f"an integer in [0, {MAX_SEED}] (outside it Lightning would pick a random seed)",
            lambda v: is_int(v) and 0 <= v <= MAX_SEED,
            fix="{key}=42",
        ),
    )
    run_name: str = "${coalesce:${variant},${model_name:${pretrained_seq2seq}},${encoder.name}2${decoder.name}}-${data.name}-s${seed}"
    # -m runs go to outputs/sweeps/<sweep_name>/<run_name>-<job key>; a fixed name lets a re-run skip finished jobs
    sweep_name: str = "${now:%Y-%m-%d_%H-%M-%S}"
    skip_completed: bool = True  # a run whose directory holds a completed metrics.json is not run again
    output_dir: str = (
        "${hydra:runtime.output_dir}"  # this run's directory (set by Hydra; tests set it by hand)
    )
    ckpt_path: Optional[str] = None  # noqa: UP045  resume from this checkpoint (refused if another run made it)
    # start from the model weights of this checkpoint, whatever made it (a new optimizer, schedule and step count)
    warm_start_from: Optional[str] = None  # noqa: UP045
    resume: bool = True  # re-running a command continues from checkpoints/last.ckpt; false: start afresh
    # the metric that picks checkpoints/best.ckpt (and stops the run early): val/loss, or val/<one of data.metrics>,
    # computed then on the whole validation split at every validation (paper=rothe2020: the task's primary metric)
    monitor: str = "val/loss"
    monitor_mode: str = key(
        "min", one_of(("min", "max"), "min or max (for the `monitor` metric)", fix="{key}=min")
    )
    gen_val_batches: Optional[int] = key(  # noqa: UP045  validation batches decoded at each validation
        2,
        at_least(1, "validation batches decoded at each validation; null: all", nullable=True, fix="{key}=2"),
    )
    early_stopping: EarlyStoppingConfig = key(factory=EarlyStoppingConfig)
    ema: EMAConfig = key(factory=EMAConfig)
    average: AverageConfig = key(factory=AverageConfig)
    eval_before_training: bool = False  # also evaluate the untrained model on test (test_before_training)
    # evaluated on test after training: best.ckpt, last.ckpt, or average.ckpt (average.last >= 1)
    test_ckpt: str = key("best", one_of(("best", "last", "average"), fix="{key}=best"))
    # auto: a Rich progress bar on a terminal, plain log lines otherwise
    progress: str = key("auto", one_of(("auto", "rich", "plain", "none"), fix="{key}=auto"))
    # ε of the training loss's label smoothing (0: off; tensor2tensor's transformer models use 0.1); the loss and
    # its gradient are per target token of the whole optimizer step (over accumulation and processes)
    label_smoothing: float = key(
        0.0,
        Rule(
            "a number in [0, 1): the probability mass spread over the vocabulary",
            lambda v: is_number(v) and 0 <= v < 1,
            fix="{key}=0.1",
        ),
    )
    skip_nonfinite: bool = False  # true: skip (and count) batches whose loss is NaN/inf instead of stopping
    skip_nonfinite_max_share: float = key(  # a run that skipped more than this share is not completed
        0.1,
        share(
            "a share in [0, 1] of training batches a run may skip and still complete",
            low_open=False,
            fix="{key}=0.1",
        ),
    )
    gpu_lease: bool = (
        True  # a one-GPU job takes a GPU no other job of this machine holds (waits if all are busy)
    )
    # glibc keeps freed memory instead of mmap/munmap of large blocks (same results; faster: docs/performance.md)
    reuse_host_memory: bool = True
    encoder: EncoderConfig = key(factory=EncoderConfig)
    decoder: DecoderConfig = key(factory=DecoderConfig)
    sharing: SharingConfig = key(factory=SharingConfig)
    # data before trainer and optimizer: the objects are made in this order, so a bad data.max_steps or
    # data.weight_decay is refused under its own key, not under the trainer or optimizer key that reads it
    data: DataConfig = key(factory=DataConfig)
    trainer: TrainerConfig = key(factory=TrainerConfig)
    optimizer: OptimizerConfig = key(factory=OptimizerConfig)
    logger: LoggerConfig = key(factory=LoggerConfig)
    callbacks: Dict[str, Any] = key(factory=dict)  # noqa: UP006  Lightning callbacks to instantiate (_target_)
    paper: Optional[Any] = None  # noqa: UP045  the paper picked (paper=rothe2020), its protocol: src.paper

    @property
    def monitors_generation(self) -> bool:
        """Whether `monitor` is a generated metric (ROUGE, SARI, BLEU, ...), not the teacher-forced loss."""
        return self.monitor != "val/loss"

    @property
    def decoded_val_batches(self) -> int | None:
        """Validation batches decoded at each validation (None: all): every one where a generated metric is
        monitored, else `gen_val_batches`."""
        return None if self.monitors_generation else self.gen_val_batches

    def model_spec(self) -> ModelSpec:
        """The model this run trains: its encoder, decoder and sharing groups (or pretrained_seq2seq) as one spec."""
        return _model_spec(self, self.encoder, self.decoder, self.sharing, self.pretrained_usage)

    def identity(self) -> dict:
        """What a run is, as metrics.json, the report and W&B's tags name it."""
        return identity(self)

    def check(self) -> None:
        if self.ckpt_path is not None and self.warm_start_from is not None:
            raise UserError(
                "ckpt_path and warm_start_from are both set: ckpt_path resumes a run (its optimizer and step), "
                "warm_start_from starts a new one from its weights. Fix: set one of them."
            )


@dataclass
class EvalConfig(Checked):
    """python -m src.eval: what to evaluate, on what, and how to decode it (null: as the run did)."""

    ckpt_path: Optional[str] = None  # noqa: UP045  a checkpoint written by src.train (its config and tokenizers)
    # or a whole saved model (python -m src.export's directory, a Hub EncoderDecoderModel), with data=<task>
    pretrained_seq2seq: Optional[str] = None  # noqa: UP045
    pretrained_usage: PretrainedUsage = key(factory=PretrainedUsage)
    split: Any = None  # test, validation, or [validation,test]; null: test, and both under -m
    data_path: Optional[str] = None  # noqa: UP045  other JSONL files of the same columns (data=jsonl runs)
    eval_batch_size: Optional[int] = key(  # noqa: UP045  null: the run's data.eval_batch_size
        None,
        at_least(
            1, "examples per evaluation batch", nullable=True, fix="eval_batch_size=32 (null: the run's)"
        ),
    )
    precision: Any = key(None, precision_rule("null (the run's), "))  # 32-true: as plain transformers in fp32
    logger_mode: Optional[str] = None  # noqa: UP045  W&B mode for this evaluation; null: the run's
    reuse_host_memory: bool = True  # as src.train's (speed only)
    output_dir: str = "${hydra:runtime.output_dir}"
    decoding: DecodingOverride = key(factory=DecodingOverride)  # null: the run's own setting
    data: Optional[DataConfig] = None  # noqa: UP045  with pretrained_seq2seq: the task (data=<option>)
    logger: Optional[LoggerConfig] = None  # noqa: UP045  null: as the training run; wandb | none


def register() -> None:
    """Make the commands' schemas known to Hydra (conf/train.yaml and conf/eval.yaml name them first)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="eval_schema", node=EvalConfig)


@functools.cache
def schema_rules() -> dict:
    """Every key's rule in the commands' configs, by the key's full name (the one-line errors word a value of the
    wrong type with it)."""
    return {**rules(EvalConfig), **rules(TrainConfig)}


def unknown_keys(node, where: str = "") -> None:
    """Refuse a key that a schema does not have (added with `+`, which Hydra lets in under a typed node): its
    closest key and the fix, as a misspelt key without `+` is refused."""
    schema = OmegaConf.get_type(node)
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return
    known = {f.name for f in dataclasses.fields(schema)}
    for name in node:
        full = f"{where}{name}"
        if name == "hydra" and not where:
            continue  # Hydra's own node, where a composed config keeps it
        if name not in known:
            if where == "trainer." and name in SET_BY_THE_PROJECT:
                raise UserError(set_by_the_project(name))
            value = OmegaConf.to_container(node, resolve=False).get(name)
            close = closest(name, known)
            group = where.rstrip(".") or "the config"
            fix = f"{where}{close}={shown(value)} (the closest key)" if close else f"drop +{full}"
            raise UserError(
                f"+{full}={shown(value)}: {name} is not a key of {group}, so an added key would be ignored. "
                f"Fix: {fix}; --cfg job lists the keys."
            )
        child = node._get_node(name)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            unknown_keys(child, f"{full}.")


def _objects(cfg: DictConfig, schema: type):
    if OmegaConf.get_type(cfg) is not schema:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    if "hydra" in cfg:  # Hydra's own node, where a composed config keeps it: not the command's
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    unknown_keys(cfg)
    return OmegaConf.to_object(cfg)


def train_config(cfg: DictConfig) -> TrainConfig:
    """The composed `src.train` config as objects: every key's rule checked (UserError on the first that fails)."""
    return _objects(cfg, TrainConfig)


def eval_config(cfg: DictConfig) -> EvalConfig:
    """The composed `src.eval` config as objects, every key's rule checked."""
    return _objects(cfg, EvalConfig)


def composed_model_spec(cfg: DictConfig) -> ModelSpec:
    """The ModelSpec of a composed `src.train` config, from its model groups alone (as objects, their rules
    checked): what plan and the paper's parameter counts need, where the run's other keys (its output_dir) may
    not resolve outside the command."""
    groups = (
        OmegaConf.to_object(cfg[name]) for name in ("encoder", "decoder", "sharing", "pretrained_usage")
    )
    return _model_spec(cfg, *groups)


def _model_spec(run, encoder, decoder, sharing, usage) -> ModelSpec:
    """`model_spec` of a run's model groups (objects) and its run-level keys (a TrainConfig or a composed one)."""
    return model_spec(
        encoder,
        decoder,
        sharing,
        fallback_checkpoint=run.checkpoints["bert"],
        attn_implementation=run.attn_implementation,
        pretrained_seq2seq=run.pretrained_seq2seq,
        pretrained_usage=usage,
    )


def data_config(data) -> DataConfig:
    """A `data=` config (a composed node or a plain dict) as a DataConfig: keys it lacks take their defaults, and
    every rule runs."""
    return _objects(data, DataConfig)


def stored_train_config(stored: dict) -> TrainConfig:
    """The TrainConfig a checkpoint stored (`Seq2SeqModule.run_config`, resolved), of today's layout or an older
    one: moved keys where they are now (`_upgrade`), keys the schema no longer has left out, and keys
    it lacks at their defaults. Every rule runs."""
    plain = _known(TrainConfig, _upgrade(copy.deepcopy(stored)))
    plain.setdefault("output_dir", "")  # the run's own directory, where it was trained; unused by evaluation
    return _objects(OmegaConf.create(plain), TrainConfig)


def _known(schema: type, values: dict) -> dict:
    hints = typing.get_type_hints(schema)
    known = {}
    for f in dataclasses.fields(schema):
        if f.name not in values:
            continue
        value, inner = values[f.name], hints[f.name]
        inner = next((a for a in typing.get_args(inner) if a is not type(None)), inner)
        if isinstance(inner, type) and dataclasses.is_dataclass(inner) and isinstance(value, dict):
            value = _known(inner, value)
        known[f.name] = value
    return known


def _upgrade(run: dict) -> dict:
    """A run config of an earlier layout, with keys that have moved since put where they are now."""
    for name in ("enable_progress_bar", "skip_nonfinite"):  # were Trainer-group keys; now ours, top-level
        run.get("trainer", {}).pop(name, None)
    data = run.get("data", {})
    if "generation" in data:  # the decoding settings' earlier name
        data.setdefault("decoding", data.pop("generation"))
    return run
