"""The `trainer=` group: lightning.Trainer's arguments (every one, so that a misspelt key names the closest and a
wrong type fails as the config composes), the project's defaults for them, and the project's own `compile`.

The fields are Lightning's signature, less the arguments the project sets itself (SET_BY_THE_PROJECT); a test
holds them against the installed Lightning, so they cannot drift. Where the project has no default of its own a
field has Lightning's, so that the Trainer gets what it would have had without the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional  # noqa: UP035

from src.system.errors import UserError
from src.system.keys import Checked, Rule, at_least, is_int, is_number, key

#: lightning.Trainer arguments the project sets itself (src.run.assemble.make_trainer): a value under trainer.*
#: would be replaced without a word, so it is refused with the key that does set it
SET_BY_THE_PROJECT = {
    "logger": "logger=<option> (conf/logger: wandb, tensorboard, csv, none)",
    "callbacks": "the callbacks= group (conf/callbacks/default.yaml)",
    "enable_progress_bar": "progress=rich|plain|none",
    "plugins": "trainer.precision (mixed precision is given to the Trainer as a plugin)",
}

#: trainer.* keys that are the project's, not lightning.Trainer's: taken out before the Trainer is made
PROJECT_TRAINER_KEYS = ("compile",)
#: trainer.* keys that are no Trainer arguments as given: the project's own, the precision (given resolved), and
#: Hydra's `_target_` of an older run's config
NOT_ARGUMENTS = ("precision", "_target_", *PROJECT_TRAINER_KEYS)


def trainer_arguments(trainer) -> dict:
    """The lightning.Trainer keyword arguments of a trainer group (a mapping): every key but NOT_ARGUMENTS."""
    return {k: v for k, v in trainer.items() if k not in NOT_ARGUMENTS}


def set_by_the_project(name: str) -> str:
    """The refusal of trainer.<name> where the project sets that Trainer argument itself."""
    return (
        f"trainer.{name} is set by the project, not from the trainer group: a value there would be replaced "
        f"without a word. Fix: use {SET_BY_THE_PROJECT[name]}."
    )


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


def precision_rule(also: str = "") -> Rule:
    names = ", ".join(str(p) for p in PRECISIONS if not isinstance(p, int))
    return Rule(
        f"{also}one of {names}",
        lambda v: (isinstance(v, str) or is_int(v)) and v in PRECISIONS,
        nullable=True,
        fix="{key}=auto (bf16-mixed where it is fast, else 32-true)",
    )


def _interval(value) -> bool:
    return (is_int(value) and value >= 1) or (
        isinstance(value, float) and math.isfinite(value) and 0 < value <= 1
    )


@dataclass
class TrainerConfig(Checked):
    """lightning.Trainer's arguments (Any where Lightning takes several types), the project's defaults first."""

    PREFIX: ClassVar[str] = "trainer"
    # the project's defaults
    # the task's budget (data.max_steps); -1: max_epochs decides (0 and the pairs that never stop: `check`)
    max_steps: int = key(
        "${data.max_steps}",
        Rule(
            "a positive integer (optimizer steps), or -1 (trainer.max_epochs decides)",
            lambda v: is_int(v) and v >= -1,
            fix="{key}=1000",
        ),
    )
    max_epochs: Optional[int] = key(  # noqa: UP045  an epoch budget instead (WMT: 30)
        "${data.max_epochs}",
        Rule(
            "a positive integer, -1 (no epoch limit) or null (trainer.max_steps decides)",
            lambda v: is_int(v) and v >= -1,
            nullable=True,
            fix="{key}=null",
        ),
    )
    val_check_interval: Any = key(  # validate every N training steps (or a share of an epoch)
        200,
        Rule(
            "a positive integer (validate every N training steps) or a share of an epoch in (0, 1]",
            _interval,
            nullable=True,
            fix="{key}=200",
        ),
    )
    check_val_every_n_epoch: Optional[int] = None  # noqa: UP045  (lets val_check_interval span epochs)
    limit_val_batches: Any = None  # fraction or number of validation batches per validation (null = all)
    gradient_clip_val: Any = key(
        1.0,
        Rule(
            "a gradient norm >= 0 to clip to (0 or null: no clipping)",
            lambda v: is_number(v) and v >= 0,
            nullable=True,
            fix="{key}=1.0",
        ),
    )
    accumulate_grad_batches: int = key(1, at_least(1, "forward passes per optimizer step", fix="{key}=1"))
    # auto: bf16-mixed on GPUs and on CPUs with AVX512-BF16/AMX, else 32-true (docs/performance.md)
    precision: Any = key("auto", precision_rule())
    accelerator: Any = "auto"
    devices: Any = 1
    log_every_n_steps: Optional[int] = 50  # noqa: UP045
    num_sanity_val_steps: Optional[int] = 0  # noqa: UP045
    enable_model_summary: Optional[bool] = False  # noqa: UP045
    deterministic: Any = False
    use_distributed_sampler: bool = False  # the data module's samplers shard by process themselves
    default_root_dir: Optional[str] = "${output_dir}"  # noqa: UP045
    # the project's own: torch.compile the loss pass (not generation); metrics.json's `compile` records it
    compile: bool = key(
        False,
        Rule(
            "true (torch.compile the model's loss pass) or false",
            lambda v: isinstance(v, bool),
            fix="{key}=false (the default)",
        ),
    )
    # Lightning's defaults
    strategy: Any = "auto"
    num_nodes: int = 1
    fast_dev_run: Any = False
    min_epochs: Optional[int] = None  # noqa: UP045
    min_steps: Optional[int] = None  # noqa: UP045
    max_time: Any = None
    limit_train_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    overfit_batches: Any = 0.0
    enable_checkpointing: Optional[bool] = None  # noqa: UP045
    gradient_clip_algorithm: Optional[str] = None  # noqa: UP045
    benchmark: Optional[bool] = None  # noqa: UP045
    inference_mode: bool = True
    profiler: Optional[str] = None  # noqa: UP045
    detect_anomaly: bool = False
    barebones: bool = False
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    enable_autolog_hparams: bool = True
    model_registry: Optional[str] = None  # noqa: UP045

    def check(self) -> None:
        """What the fields' rules let through (an integer >= -1) but trains nothing or never stops."""
        steps, epochs = self.max_steps, self.max_epochs
        if steps == 0:
            raise UserError(
                "trainer.max_steps=0 trains nothing. Fix: a positive number of steps, e.g. trainer.max_steps=1000 "
                "(or -1 with trainer.max_epochs=N: the epochs decide)."
            )
        if epochs == 0:
            raise UserError(
                "trainer.max_epochs=0 trains nothing. Fix: a positive number of epochs, or null "
                "(trainer.max_steps decides)."
            )
        if steps == -1 and epochs in (None, -1):
            never = (
                "would never stop" if epochs == -1 else "would train for Lightning's default of 1000 epochs"
            )
            shown = "null" if epochs is None else epochs
            raise UserError(
                f"trainer.max_steps=-1 leaves the budget to trainer.max_epochs, which is {shown}: the run {never}. "
                "Fix: trainer.max_steps=N (a positive number of steps), or trainer.max_epochs=N."
            )
        limit = self.limit_train_batches
        if limit is not None and is_number(limit) and limit == 0:
            raise UserError(
                f"trainer.limit_train_batches={limit} trains nothing. Fix: null (every batch), a number of "
                "batches, or a share in (0, 1]."
            )

    def arguments(self) -> dict:
        """The lightning.Trainer keyword arguments (`trainer_arguments`)."""
        return trainer_arguments({f.name: getattr(self, f.name) for f in fields(self)})
