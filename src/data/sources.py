"""Where examples come from: the Hugging Face Hub (datasets.load_dataset), local JSONL files of the same
schema, or the synthetic task; and how a record becomes a (source, target) pair."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.data.synthetic import SPLITS, make_synthetic
from src.models.checkpoints import hub_reachable
from src.system.errors import UserError

log = logging.getLogger(__name__)
LOADERS = ("hub", "jsonl", "synthetic")


@dataclass(frozen=True)
class FieldSpec:
    """How to read one side of an example from a record.

    `columns` is one column or several joined by `join`; a column may be a dotted path into nested fields,
    e.g. `translation.en` for wmt14's {"translation": {"de": ..., "en": ...}}.
    """

    columns: tuple[str, ...]
    join: str = " "

    @classmethod
    def of(cls, spec, join: str = " ") -> FieldSpec:
        return cls(tuple(spec) if isinstance(spec, list | tuple) else (spec,), join)

    def read(self, record: dict) -> str | None:
        """The text, or None when a column is missing or not a string, or all are empty (dropped, counted).

        Empty parts of a joined field are skipped: DiscoFuse leaves coherent_second_sentence empty when the
        fusion is one sentence.
        """
        parts = []
        for column in self.columns:
            value = record
            for key in column.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, str):
                return None
            if value.strip():
                parts.append(value.strip())
        return self.join.join(parts) if parts else None

    def missing(self, record: dict) -> str | None:
        """The first column absent from the record's schema (not merely empty), else None."""
        for column in self.columns:
            value = record
            for key in column.split("."):
                if not isinstance(value, dict) or key not in value:
                    return column
                value = value[key]
        return None


def describe_columns(record: dict) -> str:
    """`a, b, translation.{de,en}`: the columns a record has, nested ones spelled as dotted paths."""
    out = []
    for key, value in record.items():
        out.append(f"{key}.{{{','.join(value)}}}" if isinstance(value, dict) else key)
    return ", ".join(out)


@dataclass
class SplitStats:
    """What happened to a split's rows on the way in; logged and stored in metrics.json."""

    rows: int = 0
    dropped_empty: int = 0
    truncated_sources: int = 0
    truncated_targets: int = 0
    extra: dict = field(default_factory=dict)


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Records of a JSONL file; a malformed line is an error naming the file and the line."""
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.jsonl")) if path.parent.is_dir() else []
        raise UserError(
            f"missing data file {path} (found: {', '.join(found) or 'no .jsonl files'}). "
            "Fix: data.path=DIR holding train.jsonl, validation.jsonl and test.jsonl."
        )
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"{path} line {line_no} is not UTF-8 ({err.reason} at byte {err.start}). "
                    "Fix: re-encode the file as UTF-8."
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(
                    f"{path} line {line_no} is not valid JSON ({err.msg}). Fix or remove that line."
                ) from None
            if not isinstance(record, dict):
                raise UserError(f"{path} line {line_no} is not a JSON object. Each line must be one example.")
            yield record


def load_hub_split(
    name: str, config: str | None, split: str, limit: int | None = None, revision: str | None = None
) -> Iterable[dict]:
    """A split of a Hub dataset through `datasets.load_dataset`; from the local cache when offline.

    Args:
        revision: a branch or commit of the dataset repository; `refs/convert/parquet` for repositories that hold
            a loading script (which datasets >= 4 refuses to run): the Hub's Parquet export of the same data.
    """
    import datasets

    online = hub_reachable()
    label = f"{name}" + (f" ({config})" if config else "") + (f" at {revision}" if revision else "")
    was_offline = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = was_offline or not online  # offline: the local cache only, failing fast
    try:
        ds = datasets.load_dataset(name, config, split=split, revision=revision)
    except ValueError as err:
        if "split" in str(err).lower():
            raise UserError(
                f"dataset {label} has no split {split!r}: {err}. Fix: data.splits.<name>=..."
            ) from None
        raise UserError(f"dataset {label}: {err}") from None
    except Exception as err:  # noqa: BLE001 - datasets raises many types for "not found / not reachable"
        if not online:
            raise UserError(
                f"dataset {label} is not in the local cache and the Hugging Face Hub is not reachable (offline?). "
                "Fix: data.path=DIR holding train.jsonl, validation.jsonl and test.jsonl with the dataset's own "
                "columns, or data=synthetic."
            ) from None
        raise UserError(
            f"dataset {label} could not be loaded ({type(err).__name__}: {err}). "
            "Fix: check data.hub_name / data.hub_config."
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = was_offline
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def read_pairs(
    records: Iterable[dict],
    source: FieldSpec,
    target: FieldSpec,
    where: str,
    lowercase: bool = False,
    limit: int | None = None,
    split: str = "",
) -> tuple[list[str], list[str], SplitStats]:
    """(sources, targets, stats) of the first `limit` usable records; a column the schema lacks is an error."""
    sources, targets, stats = [], [], SplitStats()
    for i, record in enumerate(records):
        if limit is not None and len(sources) >= limit:
            break
        if i == 0 or stats.rows == 0:
            for spec, key in ((source, "source_column"), (target, "target_column")):
                absent = spec.missing(record)
                if absent is not None:
                    raise UserError(
                        f"{where} has no column {absent!r} (columns: {describe_columns(record)}). "
                        f"Fix: data.{key}=... naming columns the data has."
                    )
        src, tgt = source.read(record), target.read(record)
        if src is None or tgt is None:
            stats.dropped_empty += 1
            continue
        sources.append(src.lower() if lowercase else src)
        targets.append(tgt.lower() if lowercase else tgt)
        stats.rows += 1
    if stats.dropped_empty:
        log.warning("%s: dropped %d rows with empty or non-string fields", where, stats.dropped_empty)
    if not sources:
        raise UserError(f"the {split} split is empty: {where} has no usable examples. Fix: give it examples.")
    return sources, targets, stats


def subsample(
    sources: list[str],
    targets: list[str],
    stats: SplitStats,
    *,
    fraction: float | None = None,
    size: int | None = None,
    seed: int = 0,
    split: str = "",
) -> tuple[list[str], list[str], SplitStats]:
    """A seeded random subset of a split, in the split's order: `fraction` of its rows, or at most `size` rows.

    The subset depends on `seed` and the rows only, so every variant and run seed of a grid sees the same one.
    """
    n = len(sources)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise UserError(
                f"data.train_fraction={fraction} is not a share. Fix: a number in (0, 1], e.g. 0.1."
            )
        k = max(1, round(n * fraction))
    elif size is not None:
        if size < 1:
            raise UserError(
                f"data.validation_size={size} keeps nothing. Fix: a positive count, or null for all."
            )
        k = min(size, n)
    else:
        return sources, targets, stats
    if k >= n:
        return sources, targets, stats
    keep = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    stats.extra["random_subset"] = {"of": n, "kept": k, "seed": seed}
    log.info("%s: a random subset of %d of %d examples (seed %d)", split, k, n, seed)
    return [sources[i] for i in keep], [targets[i] for i in keep], stats


def load_pairs(
    *,
    loader: str,
    split: str,
    split_name: str | None = None,
    path: str | None = None,
    hub_name: str | None = None,
    hub_config: str | None = None,
    hub_revision: str | None = None,
    source: FieldSpec,
    target: FieldSpec,
    lowercase: bool = False,
    limit: int | None = None,
    synthetic: dict | None = None,
    subset: dict | None = None,
):
    """(sources, targets, stats) of one split.

    Args:
        split: train, validation or test; `split_name` is what the dataset calls it (default the same).
        path: a local directory of `<split_name>.jsonl` files in the dataset's schema; wins over the hub.
        limit: the first N usable records only.
        subset: keyword arguments of `subsample` (a seeded random subset of what `limit` left), or None.
    """
    split_name = split_name or split
    if loader == "synthetic" and not path:
        sizes = {s: int(synthetic[f"num_{s}"]) for s in SPLITS}
        if sizes[split] == 0:
            raise UserError(
                f"the {split} split is empty: data.synthetic.num_{split}=0. Fix: make it positive."
            )
        records = make_synthetic(sizes, seed=int(synthetic["seed"]))[split]
        where = f"synthetic task, {split}"
    elif path:
        file = Path(path).expanduser() / f"{split_name}.jsonl"
        records = iter_jsonl(file)
        where = str(file)
    elif loader == "hub":
        records = load_hub_split(hub_name, hub_config, split_name, limit, hub_revision)
        where = f"dataset {hub_name} ({hub_config}), split {split_name}"
    elif loader == "jsonl":
        raise UserError(
            "data=jsonl needs a directory. Fix: data.path=DIR holding train/validation/test .jsonl"
        )
    else:
        raise UserError(f"unknown data loader {loader!r}; choose one of {', '.join(LOADERS)}")
    pairs = read_pairs(records, source, target, where, lowercase, limit, split)
    return subsample(*pairs, **subset, split=split) if subset else pairs
