"""From a composed config to the objects Lightning runs: the model, the data and the Trainer, in one place.

    TrainConfig (src.config.schema) -> assemble(config) -> Seq2SeqModule + Seq2SeqDataModule + lightning.Trainer

`src.train`, `src.eval` and `scripts/benchmark.py` all build through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.plugins.environments import SLURMEnvironment

from src.config.data import DataConfig, per_device_batch_size
from src.config.schema import TrainConfig
from src.data.datamodule import Seq2SeqDataModule
from src.data.synthetic import SPLITS
from src.metrics.text import scoring_options
from src.models.decoding import Decoding
from src.models.module import Seq2SeqModule
from src.paper.protocol import check_protocol
from src.run.callbacks import AtomicCheckpointIO
from src.system.hardware import resolve_precision
from src.system.precision import precision_args

log = logging.getLogger(__name__)


def build_module(config: TrainConfig) -> Seq2SeqModule:
    """The LightningModule: the model spec (encoder/decoder/sharing groups), optimizer, decoding and metrics."""
    spec = config.model_spec()
    return Seq2SeqModule(
        model=spec.as_dict(),
        optimizer=config.optimizer.as_dict(),
        generation=Decoding.of(config.data.decoding).kwargs(),
        metrics=list(config.data.metrics),
        # a monitored generated metric is scored on the whole validation split (data.validation_size)
        gen_val_batches=config.decoded_val_batches,
        skip_nonfinite=config.skip_nonfinite,
        label_smoothing=config.label_smoothing,
        **scoring_options(config.data.as_dict()),
    )


def build_datamodule(data: DataConfig, module: Seq2SeqModule, seed: int) -> Seq2SeqDataModule:
    """The DataModule of a task; the tokenizers and special tokens come from the model."""
    return Seq2SeqDataModule(
        data,
        encoder_tokenizer=module.encoder_tokenizer,
        decoder_tokenizer=module.decoder_tokenizer,
        special_ids=module.special_ids,
        seed=seed,
        max_source_length=module.source_length(data.max_source_length, data.max_target_length),
        source_special_tokens=module.source_special_tokens,
    )


def make_trainer(config: TrainConfig, precision=None, callbacks=None, **overrides) -> L.Trainer:
    """The Lightning Trainer from the `trainer=` group.

    Args:
        precision: the resolved precision (`resolve_precision`); None resolves `trainer.precision` here.
            Mixed precision is given as a plugin that lets the fused optimizer clip gradients.
        callbacks: None: every callback of the `callbacks=` group (what --cfg job lists); else these.
            The progress bar is on when one of them is a progress bar (`progress=rich`).
    """
    trainer = config.trainer
    # precision goes in resolved (below); the project's own keys (compile: `assemble`) are no Trainer arguments
    args = trainer.arguments()
    if precision is None:
        precision = resolve_precision(trainer.precision, trainer.accelerator)
    if callbacks is None:
        callbacks = [c for c in (instantiate(c) for c in config.callbacks.values()) if c is not None]
    bar = any(isinstance(c, ProgressBar) for c in callbacks)
    args_precision = precision_args(precision, trainer.accelerator)
    # checkpoints replaced atomically on their own file system (callbacks.AtomicCheckpointIO)
    plugins = [*args_precision.pop("plugins", []), AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # requeue on a signal is ours (callbacks.SaveOnSignal), not Lightning's
        plugins.append(SLURMEnvironment(auto_requeue=False))
    args_precision["plugins"] = plugins
    overrides = {"enable_progress_bar": bar, **args_precision, **overrides}
    return L.Trainer(**{**args, "callbacks": callbacks, **overrides})


@dataclass
class Assembly:
    module: Seq2SeqModule
    datamodule: Seq2SeqDataModule
    trainer: L.Trainer
    precision: str | int

    @property
    def batch(self) -> dict:
        """Examples per optimizer step: per device x devices x accumulation (metrics.json's `batch`); with a token
        budget (`data.max_tokens`) the tokens per device instead, as the example count varies batch to batch."""
        t, per = self.trainer, self.datamodule.batch_size
        devices = t.num_devices * t.num_nodes
        max_tokens = self.datamodule.config.max_tokens
        if max_tokens is not None:
            return {
                "max_tokens_per_device": max_tokens,
                "devices": devices,
                "accumulation": t.accumulate_grad_batches,
                "max_tokens_global": max_tokens * devices * t.accumulate_grad_batches,
            }
        total = per * devices * t.accumulate_grad_batches
        return {
            "per_device": per,
            "devices": devices,
            "accumulation": t.accumulate_grad_batches,
            "global": total,
        }


def assemble(
    config: TrainConfig,
    module: Seq2SeqModule | None = None,
    callbacks=None,
    splits=SPLITS,
    **trainer_overrides,
) -> Assembly:
    """Model, data and Trainer of a run; the data are loaded and checked before anything runs.

    Args:
        module: an already built (or loaded) module; None builds it from the config.
        callbacks: the Trainer's callbacks; None: the `callbacks=` group's.
        splits: the splits to load and check now (evaluation needs one).
        trainer_overrides: Trainer arguments that win over the `trainer=` group (logger, devices, ...).
    """
    check_protocol(config.paper, config.variant, config.data.name)
    L.seed_everything(config.seed, workers=True)
    module = module if module is not None else build_module(config)
    if config.trainer.compile and not module.compiled:  # trainer.compile=true: the loss pass, compiled
        module.compile_model()
    datamodule = build_datamodule(config.data, module, config.seed)
    precision = resolve_precision(config.trainer.precision, config.trainer.accelerator)
    trainer = make_trainer(config, precision, callbacks, **trainer_overrides)
    if "train" in splits:
        devices = trainer.num_devices * trainer.num_nodes
        datamodule.batch_size = per_device_batch_size(config.data, devices, trainer.accumulate_grad_batches)
    datamodule.prepare(splits)  # bad data fails here, before anything is trained or written
    return Assembly(module, datamodule, trainer, precision)


def evaluate(
    trainer: L.Trainer, module: Seq2SeqModule, datamodule, ckpt_path=None, split: str = "test"
) -> dict:
    """Generation metrics on a split ({name: value}, no prefix); predictions stay on module.test_predictions."""
    loader = datamodule.val_dataloader() if split == "validation" else None
    (metrics,) = trainer.test(
        module,
        dataloaders=loader,
        datamodule=None if loader is not None else datamodule,
        ckpt_path=ckpt_path,
        verbose=False,
        weights_only=True if ckpt_path else None,
    )
    return {k.removeprefix("test/"): float(v) for k, v in metrics.items()}
