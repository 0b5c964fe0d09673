"""Where examples come from: the Hugging Face Hub (datasets.load_dataset), local JSONL files of the same
schema, or the synthetic task; and how a record becomes a (source, target) pair."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

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
            try:  # a byte order mark (some editors write one) opens the first line: not part of the JSON
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
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


def load_hub_split(name: str, config: str | None, split: str, revision: str | None = None):
    """A split of a Hub dataset through `datasets.load_dataset`; from the local cache when offline.

    Args:
        revision: a branch or commit of the dataset repository; `refs/convert/parquet` for repositories that hold
            a loading script (which datasets >= 4 refuses to run): the Hub's Parquet export of the same data.
    """
    import datasets  # only for a Hub task: local files and the synthetic task read without it

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
    return ds


#: pairs per chunk on the way to the tokenizer: bounds the memory of a split to one chunk's texts and ids
CHUNK = 2048


@dataclass
class PairStream:
    """A split's (source, target) pairs in chunks, read from the data as they are consumed.

    `stats` fills in as the chunks are read; `total` is the number of rows expected (a progress bar's end), or
    None where it is not known without reading the data.
    """

    chunks: Iterator[tuple[list[str], list[str]]]
    stats: SplitStats
    total: int | None = None


def iter_pairs(
    records: Iterable[dict],
    source: FieldSpec,
    target: FieldSpec,
    where: str,
    stats: SplitStats,
    lowercase: bool = False,
    limit: int | None = None,
    split: str = "",
) -> Iterator[tuple[str, str]]:
    """The (source, target) pairs of the first `limit` usable records, counted into `stats` as they pass.

    A column the schema lacks is an error (checked until the first usable record); rows with an empty or
    non-string field are dropped and counted; a split with no usable row is an error once it is read.
    """
    for record in records:
        if limit is not None and stats.rows >= limit:
            break
        if stats.rows == 0:
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
        stats.rows += 1
        yield (src.lower(), tgt.lower()) if lowercase else (src, tgt)
    if stats.dropped_empty:
        log.warning("%s: dropped %d rows with empty or non-string fields", where, stats.dropped_empty)
    if not stats.rows:
        raise UserError(f"the {split} split is empty: {where} has no usable examples. Fix: give it examples.")


def chunked(pairs: Iterable[tuple[str, str]], size: int = CHUNK) -> Iterator[tuple[list[str], list[str]]]:
    """(sources, targets) lists of at most `size` pairs each."""
    sources, targets = [], []
    for src, tgt in pairs:
        sources.append(src)
        targets.append(tgt)
        if len(sources) == size:
            yield sources, targets
            sources, targets = [], []
    if sources:
        yield sources, targets


def read_pairs(
    records: Iterable[dict],
    source: FieldSpec,
    target: FieldSpec,
    where: str,
    lowercase: bool = False,
    limit: int | None = None,
    split: str = "",
) -> tuple[list[str], list[str], SplitStats]:
    """(sources, targets, stats) of the first `limit` usable records, as lists (small data: tests, scripts)."""
    stats = SplitStats()
    pairs = list(iter_pairs(records, source, target, where, stats, lowercase, limit, split))
    return [s for s, _ in pairs], [t for _, t in pairs], stats


def subset_indices(
    n: int, *, fraction: float | None = None, size: int | None = None, seed: int = 0
) -> np.ndarray | None:
    """The sorted indices of a seeded random subset of n rows: `fraction` of them, or at most `size`; None: all.

    The subset depends on `seed` and n only, so every variant and run seed of a grid sees the same one.
    """
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
        return None
    if k >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _note_subset(stats: SplitStats, n: int, k: int, seed: int, split: str) -> None:
    stats.extra["random_subset"] = {"of": n, "kept": k, "seed": seed}
    log.info("%s: a random subset of %d of %d examples (seed %d)", split, k, n, seed)


def _kept(pairs: Iterable[tuple[str, str]], keep: np.ndarray) -> Iterator[tuple[str, str]]:
    """The pairs whose position is in `keep` (sorted)."""
    wanted = iter(keep.tolist())
    nxt = next(wanted, None)
    for i, pair in enumerate(pairs):
        if i == nxt:
            yield pair
            nxt = next(wanted, None)
            if nxt is None:
                return


def count_lines(path: Path) -> int:
    """Newlines in a file, read in blocks (a progress bar's end for a JSONL file; blank lines included)."""
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
    return n


def iter_dataset(ds, columns: Iterable[str], batch: int = CHUNK) -> Iterator[dict]:
    """Records of a `datasets` table, a block of rows at a time, only the top-level columns named in `columns`
    when the table has them all (else every column, so that a missing one is reported with the columns there are).

    A table read whole from its Arrow files (the Hub loader's) is read from those files as streams, not through
    the memory map, which would leave every page of a multi-GB split resident in the process; anything else
    (a selection, a table in memory) through `Dataset.iter`.
    """
    wanted = {c.split(".")[0] for c in columns}
    names = [c for c in ds.column_names if c in wanted] if wanted <= set(ds.column_names) else ds.column_names
    files = [f["filename"] for f in ds.cache_files]
    if files and ds._indices is None and _arrow_rows(files) == len(ds):
        for file in files:
            with pa.OSFile(file) as f:
                for block in pa.ipc.open_stream(f):
                    yield from block.select(names).to_pylist()
        return
    for block in ds.select_columns(names).iter(batch_size=batch):
        for values in zip(*(block[n] for n in names), strict=True):
            yield dict(zip(names, values, strict=True))


def _arrow_rows(files: list[str]) -> int:
    rows = 0
    for file in files:
        with pa.memory_map(file) as f:
            rows += pa.ipc.open_stream(f).read_all().num_rows  # only the metadata is read from the map
    return rows


def pair_stream(
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
    chunk: int = CHUNK,
) -> PairStream:
    """One split's pairs in chunks of `chunk`, read from the data as they are consumed (no split is ever held
    whole: a JSONL file is read line by line, a Hub table a block of rows at a time from its Arrow files).

    Args:
        split: train, validation or test; `split_name` is what the dataset calls it (default the same).
        path: a local directory of `<split_name>.jsonl` files in the dataset's schema; wins over the hub.
        limit: the first N usable records only.
        subset: keyword arguments of `subset_indices` (a seeded random subset of what `limit` left), or None.
            Choosing it needs the number of usable rows, so the data is read twice (the first time without
            keeping anything).
    """
    split_name = split_name or split
    total = None
    if loader == "synthetic" and not path:
        sizes = {s: int(synthetic[f"num_{s}"]) for s in SPLITS}
        if sizes[split] == 0:
            raise UserError(
                f"the {split} split is empty: data.synthetic.num_{split}=0. Fix: make it positive."
            )

        def records():
            return make_synthetic(sizes, seed=int(synthetic["seed"]))[split]

        where, total = f"synthetic task, {split}", sizes[split]
    elif path:
        file = Path(path).expanduser() / f"{split_name}.jsonl"

        def records():
            return iter_jsonl(file)

        where = str(file)
        total = count_lines(file) if file.is_file() else None
    elif loader == "hub":
        ds = load_hub_split(hub_name, hub_config, split_name, hub_revision)
        columns = [*source.columns, *target.columns]

        def records():
            return iter_dataset(ds, columns, chunk)

        where, total = f"dataset {hub_name} ({hub_config}), split {split_name}", len(ds)
    elif loader == "jsonl":
        raise UserError(
            "data=jsonl needs a directory. Fix: data.path=DIR holding train/validation/test .jsonl"
        )
    else:
        raise UserError(f"unknown data loader {loader!r}; choose one of {', '.join(LOADERS)}")
    if limit is not None and total is not None:
        total = min(total, limit)
    stats = SplitStats()

    def pairs(stats: SplitStats) -> Iterator[tuple[str, str]]:
        return iter_pairs(records(), source, target, where, stats, lowercase, limit, split)

    if subset:
        counted = SplitStats()
        for _ in pairs(counted):  # the first pass: how many usable rows there are
            pass
        stats.rows, stats.dropped_empty = counted.rows, counted.dropped_empty
        keep = subset_indices(counted.rows, **subset)
        if keep is None:
            return PairStream(chunked(pairs(SplitStats()), chunk), stats, counted.rows)
        _note_subset(stats, counted.rows, len(keep), subset.get("seed", 0), split)
        return PairStream(chunked(_kept(pairs(SplitStats()), keep), chunk), stats, len(keep))
    return PairStream(chunked(pairs(stats), chunk), stats, total)


def load_pairs(**kwargs) -> tuple[list[str], list[str], SplitStats]:
    """(sources, targets, stats) of one split as lists (`pair_stream`'s keyword arguments): for small data."""
    stream = pair_stream(**kwargs)
    sources, targets = [], []
    for src, tgt in stream.chunks:
        sources += src
        targets += tgt
    return sources, targets, stream.stats
