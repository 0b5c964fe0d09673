"""The `data=` group's schema: a task and its source, how it is batched, scored and decoded, and the task's own
budget (its step count, its recipe's weight decay), which the trainer and optimizer groups read. Each field is a
key of conf/data/*.yaml, with its default and its rule; a task's file holds only what differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional  # noqa: UP035 (OmegaConf's structured configs read typing)

from omegaconf import MISSING

from src.models.decoding import TaskDecoding
from src.system.errors import UserError
from src.system.keys import Checked, Rule, at_least, is_int, is_number, key, one_of, refuse, share

#: where the examples come from: datasets.load_dataset, local JSONL files (data.path) or the seeded synthetic task
LOADERS = ("hub", "jsonl", "synthetic")


@dataclass
class SyntheticConfig(Checked):
    """The offline synthetic task (src/data/synthetic.py): its seed and the size of each split."""

    PREFIX: ClassVar[str] = "data.synthetic"
    seed: int = 0
    num_train: int = key(4000, at_least(1, "training examples", fix="{key}=4000"))
    num_validation: int = key(200, at_least(1, "validation examples", fix="{key}=200"))
    num_test: int = key(200, at_least(1, "test examples", fix="{key}=200"))


def _steps(value) -> bool:
    return is_int(value) and (value >= 1 or value == -1)


@dataclass
class DataConfig(Checked):
    """A task: the DataModule reads the data keys; `metrics`, the scoring keys (`bleu_lowercase`, `scored_text`,
    `rouge_stemmer`) and `decoding` (how the task is scored and decoded) go to the LightningModule; `max_steps`,
    `max_epochs` and `weight_decay` are the task's budget and recipe, which trainer.* and optimizer.* read."""

    PREFIX: ClassVar[str] = "data"

    name: str = MISSING  # the task's name (run names, the paper's tables)
    loader: str = key("hub", one_of(LOADERS, fix="data=jsonl data.path=DIR, or data=synthetic"))
    path: Optional[str] = None  # noqa: UP045  a local directory of <split>.jsonl in the dataset's schema; wins over the hub
    hub_name: Optional[str] = None  # noqa: UP045  the Hugging Face dataset id
    hub_config: Optional[str] = None  # noqa: UP045  its configuration (e.g. 3.0.0 for cnn_dailymail)
    hub_revision: Optional[str] = None  # noqa: UP045  a branch of the dataset repository (refs/convert/parquet)
    splits: Dict[str, str] = key(  # noqa: UP006  the dataset's names for the three splits
        factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    source_column: Any = (
        "source"  # a column, a dotted path into nested fields (translation.en), or a list ...
    )
    target_column: Any = "target"
    source_join: str = " "  # ... joined by this string (empty parts skipped)
    target_join: str = " "
    lowercase: bool = False  # lowercase sources and targets (the paper's Gigaword)
    max_source_length: int = (
        key(  # tokens; longer sources are truncated and counted ([CLS] x [SEP]: 3 at least)
            128, at_least(3, "the source length in tokens, special tokens included", fix="{key}=128")
        )
    )
    max_target_length: int = (
        key(  # tokens including EOS; longer targets are truncated and counted (a token, EOS)
            128, at_least(2, "the target length in tokens, special tokens included", fix="{key}=128")
        )
    )
    batch_size: Optional[int] = key(  # noqa: UP045  examples per device per forward pass
        256,
        at_least(
            1,
            "examples per device per forward pass; null only with data.global_batch_size set",
            nullable=True,
            fix="{key}=16",
        ),
    )
    global_batch_size: Optional[int] = key(  # noqa: UP045  examples per optimizer step over all devices
        None,
        at_least(
            1,
            "examples per optimizer step over all devices",
            nullable=True,
            fix="{key}=256, or null (data.batch_size decides)",
        ),
    )
    max_tokens: Optional[int] = key(  # noqa: UP045  training batches up to N padded tokens (fairseq's --max-tokens)
        None,
        at_least(
            1,
            "padded tokens per training batch, examples x (longest source + longest label); null: data.batch_size",
            nullable=True,
            fix="{key}=4096, or null (batches of data.batch_size examples)",
        ),
    )
    eval_batch_size: Optional[int] = key(  # noqa: UP045  null: data.batch_size's
        64,
        at_least(1, "examples per evaluation batch; null: data.batch_size's", nullable=True, fix="{key}=64"),
    )
    num_workers: int = key(0, at_least(0, "data loader worker processes", fix="{key}=0"))
    limit_train: Optional[int] = key(  # noqa: UP045  the first N training examples (a quick look, not a sample)
        None, at_least(1, "the first N training examples; null: all", nullable=True, fix="{key}=null")
    )
    limit_eval: Optional[int] = key(  # noqa: UP045  the first N validation and test examples
        None,
        at_least(1, "the first N validation and test examples; null: all", nullable=True, fix="{key}=null"),
    )
    train_fraction: Optional[float] = key(  # noqa: UP045  a random share of the training split (the paper's 10% / 1%)
        None,
        share(
            "a share in (0, 1] of the training split, or null",
            nullable=True,
            fix="{key}=0.1, or null for all",
        ),
    )
    validation_size: Optional[int] = key(  # noqa: UP045  validate on a fixed random N (test: always all)
        2000,
        at_least(1, "a random subset of N validation examples; null: all", nullable=True, fix="{key}=null"),
    )
    subset_seed: int = 0  # the seed of both random subsets: the same examples for every variant and run seed
    cache_dir: str = (
        "${oc.env:WARMSTART_CACHE,.cache/tokenized}"  # tokenized splits, keyed by data and tokenizers
    )
    parallel_tokenization: bool = True  # a cache miss tokenizes on every core (the same ids either way)
    metrics: List[str] = key(factory=lambda: ["rouge1", "rouge2", "rougeL"])  # noqa: UP006
    bleu_lowercase: bool = False  # sacreBLEU on lowercased text (uncased BLEU)
    scored_text: str = key(  # what every metric compares (docs/paper.md, "What is scored")
        "canonical",
        one_of(
            ("canonical", "as_given"),
            "canonical (punctuation split off, single spaces) or as_given",
            fix="{key}=canonical",
        ),
    )
    rouge_stemmer: bool = True  # ROUGE with Porter stemming (rouge_score's use_stemmer)
    synthetic: Optional[SyntheticConfig] = None  # noqa: UP045  the synthetic task's sizes (data=synthetic)
    decoding: TaskDecoding = key(factory=TaskDecoding)  # model.generate at validation and test
    # the task's budget and recipe: trainer.max_steps / trainer.max_epochs and the optimizer's weight decay read these
    max_steps: int = key(
        20000,
        Rule("a positive integer (optimizer steps), or -1 (max_epochs decides)", _steps, fix="{key}=1000"),
    )
    max_epochs: Optional[int] = None  # noqa: UP045  an epoch budget instead (WMT: 30, with max_steps -1)
    weight_decay: Optional[float] = key(  # noqa: UP045  the task recipe's (the blog's: 0); null: the optimizer's own
        None, Rule("a number >= 0", lambda v: is_number(v) and v >= 0, nullable=True, fix="{key}=0.0")
    )

    def check(self) -> None:
        if self.eval_batch_size is None and not is_int(self.batch_size):
            refuse(
                "data.eval_batch_size",
                None,
                "a positive integer (examples per evaluation batch; null: data.batch_size's, when that is set)",
                "data.eval_batch_size=64",
            )
        if self.max_tokens is not None and self.global_batch_size is not None:
            raise UserError(
                f"data.max_tokens={self.max_tokens} with data.global_batch_size={self.global_batch_size}: "
                "token-budget batches hold as many examples as fit, so no example count per optimizer step can "
                "hold. Fix: data.global_batch_size=null"
                f"{' data.batch_size=16' if self.batch_size is None else ''} (batches by tokens), or "
                "data.max_tokens=null (example-count batches, as the paper presets keep)."
            )


def per_device_batch_size(data: DataConfig, devices: int, accumulation: int) -> int:
    """`data.batch_size`, or the share of `data.global_batch_size` one device takes in one forward pass.

    The global batch (examples per optimizer step) is per-device batch x devices x gradient accumulation; a
    combination that does not divide it, or a batch_size that contradicts it, is refused. With `data.max_tokens`
    training batches hold as many examples as fit in the token budget and batch_size is not used for them; a
    global batch (a fixed example count) with it is refused (DataConfig.check). The config's checks and the assembly of a run both ask it, so each message is worded once..
    """
    batch, total = data.batch_size, data.global_batch_size
    if total is None:
        if batch is None:
            raise UserError(
                "data.batch_size and data.global_batch_size are both null. Fix: set one, e.g. data.batch_size=16."
            )
        return batch
    split = devices * accumulation
    fits = [a for a in (1, 2, 4, 8, 16, 32, 64) if total % (devices * a) == 0]
    fix = ", ".join(f"accumulate_grad_batches={a} -> batch {total // (devices * a)}" for a in fits[:5])
    if total % split:
        raise UserError(
            f"data.global_batch_size={total} does not divide into {devices} device(s) x "
            f"trainer.accumulate_grad_batches={accumulation}. Fix: devices x accumulation must divide {total}"
            + (f"; with {devices} device(s): {fix}." if fits else ".")
        )
    if batch is not None and batch * split != total:
        raise UserError(
            f"data.batch_size={batch} x {devices} device(s) x trainer.accumulate_grad_batches={accumulation} = "
            f"{batch * split} examples per step, not data.global_batch_size={total}. Fix: data.batch_size=null "
            f"(it follows from the global batch), or with {devices} device(s): {fix}."
        )
    return total // split
