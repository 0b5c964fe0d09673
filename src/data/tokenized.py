"""Tokenized splits, cached on disk and memory-mapped, keyed by (data, split, tokenizers, max lengths).

A cache miss streams: chunks of pairs are read, tokenized on every core the job has (the fast tokenizer's own
thread pool) and appended to the entry's files, so memory is bounded by a chunk, not by the split. Processes
that need the same entry at once (the jobs of a sweep, the ranks of a DDP run) take its lock file in turn: one
builds the entry, the others wait and read it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.data.sources import PairStream, SplitStats
from src.models.special_tokens import special_affixes
from src.system.errors import UserError, disk_full
from src.system.locks import FileLock
from src.system.outputs import disk_full_error, file_mode
from src.system.signals import check_stop

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 2: ids as raw int32 files, written chunk by chunk; 3: files.json (sizes, checked at load)
IDS = np.int32


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides a tokenizer's ids: its serialised model, class and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without truncation and padding: a call of the tokenizer sets them, the ids stay
        serialised = json.loads(backend.to_str())
        serialised.pop("truncation", None)
        serialised.pop("padding", None)
        body = json.dumps(serialised, sort_keys=True)
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps(
        [type(tokenizer).__name__, tokenizer.all_special_tokens, getattr(tokenizer, "do_lower_case", None)]
    )
    return hashlib.sha256((body + extra).encode()).hexdigest()[:16]


def _flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 ids and int64 lengths of a list of sequences."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=IDS, count=int(lengths.sum()))
    return ids, lengths


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _ids_file(path: Path) -> np.ndarray:
    """A raw int32 file, memory-mapped (an empty one as an empty array: mmap refuses zero bytes)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=IDS)
    return np.memmap(path, dtype=IDS, mode="r")


@contextlib.contextmanager
def tokenizer_threads(parallel: bool):
    """The fast tokenizers' own thread pool on (every core the process may use) for the calls inside.

    The process keeps TOKENIZERS_PARALLELISM=false otherwise (src.system.process): a pool used before a data
    worker forks deadlocks the worker. The setting is read at each call, and a fork after this block finds it
    set to false, so the child turns the pool off without the tokenizers' warning.
    """
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


class TokenizedSplit:
    """Token ids of one split (memory-mapped from the cache) and, for evaluation splits, its texts.

    `labels[i]` is the target without a start token and with EOS at the end (truncated to max_target_length
    including EOS). Generation metrics compare predictions with `targets[i]`, the task's own text, whole: an
    uncased decoder that cannot write capitals loses the points it would lose in the paper's evaluation.
    """

    def __init__(
        self,
        source_ids,
        source_offsets,
        label_ids,
        label_offsets,
        stats: SplitStats,
        texts: tuple[list[str], list[str]] | None = None,
    ):
        self._src, self._src_off, self._lab, self._lab_off = (
            source_ids,
            source_offsets,
            label_ids,
            label_offsets,
        )
        self.stats = stats
        self.sources, self.targets = texts if texts is not None else (None, None)

    @classmethod
    def load(cls, directory: Path, with_texts: bool) -> TokenizedSplit:
        """Open a cache entry; the ids stay on disk (memory-mapped)."""
        texts = None
        if with_texts:
            rows = [
                json.loads(line)
                for line in (directory / "texts.jsonl").read_text(encoding="utf-8").splitlines()
            ]
            texts = ([r["source"] for r in rows], [r["target"] for r in rows])
        return cls(
            _ids_file(directory / "source_ids.bin"),
            _offsets(np.load(directory / "source_lengths.npy")),
            _ids_file(directory / "label_ids.bin"),
            _offsets(np.load(directory / "label_lengths.npy")),
            SplitStats(**json.loads((directory / "stats.json").read_text())),
            texts,
        )

    @classmethod
    def in_memory(cls, sources: list[str], targets: list[str], tokenization: Tokenization) -> TokenizedSplit:
        """Tokenize pairs without the cache (scripts, tests)."""
        stats = SplitStats(rows=len(sources))
        src, src_lengths, lab, lab_lengths = tokenization.arrays(list(sources), list(targets), stats)
        return cls(
            src, _offsets(src_lengths), lab, _offsets(lab_lengths), stats, (list(sources), list(targets))
        )

    def __len__(self) -> int:
        return len(self._src_off) - 1

    def source(self, i: int) -> np.ndarray:
        return self._src[self._src_off[i] : self._src_off[i + 1]]

    def label(self, i: int) -> np.ndarray:
        return self._lab[self._lab_off[i] : self._lab_off[i + 1]]

    def source_lengths(self) -> np.ndarray:
        return np.diff(self._src_off)

    def label_lengths(self) -> np.ndarray:
        return np.diff(self._lab_off)


class FastEncoder:
    """A tokenizer's ids for a batch of texts, without special tokens, as `tokenizer(texts)` gives them.

    Fast (Rust) tokenizers are called through a copy of their backend with no truncation and no padding (a
    checkpoint's tokenizer.json may carry both) and `encode_batch_fast` (no character offsets); that skips the
    Python-side conversion of every output into a dict of lists. The first batch is checked against the
    tokenizer's own call, and a tokenizer whose ids differ (or a Python tokenizer) keeps the plain call.
    """

    CHECK = 64  # texts of the first batch compared with the tokenizer's own call

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend, self.checked = None, False
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            backend = copy.deepcopy(backend)
            backend.no_truncation()
            backend.no_padding()
            backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
            self.backend = backend
            self.encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def plain(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def __call__(self, texts: list[str]) -> list[list[int]]:
        if self.backend is None:
            return self.plain(texts)
        if not self.checked:
            self.checked = True
            sample = texts[: self.CHECK]
            if [e.ids for e in self.encode_batch(sample, add_special_tokens=False)] != self.plain(sample):
                log.warning(
                    "%s: the backend's ids differ from the tokenizer's; using the tokenizer's own call",
                    type(self.tokenizer).__name__,
                )
                self.backend = None
                return self.plain(texts)
        return [e.ids for e in self.encode_batch(texts, add_special_tokens=False)]


@dataclass(frozen=True)
class Tokenization:
    """How a split becomes ids: the two tokenizers, the max lengths (the target's includes EOS), the EOS id, and
    whether sources get the encoder tokenizer's special tokens (False: bare, as google/bert2bert_L-24_wmt_*)."""

    encoder_tokenizer: object
    decoder_tokenizer: object
    max_source_length: int
    max_target_length: int
    eos_id: int
    source_special_tokens: bool = True
    parallel: bool = True  # the fast tokenizers' thread pool on for whole splits (`tokenizer_threads`)
    _encoders: dict = field(default_factory=dict, compare=False, repr=False)

    def key(self) -> dict:
        """What of this decides the ids, for the cache key."""
        return {
            "enc": tokenizer_fingerprint(self.encoder_tokenizer),
            "dec": tokenizer_fingerprint(self.decoder_tokenizer),
            "max": [self.max_source_length, self.max_target_length],
            "eos": self.eos_id,
            **({} if self.source_special_tokens else {"bare_sources": True}),
        }

    def encode(self, side: str, texts: list[str]) -> list[list[int]]:
        """Ids of `texts` by the encoder's (side "source") or decoder's ("target") tokenizer, no special tokens."""
        if side not in self._encoders:
            tokenizer = self.encoder_tokenizer if side == "source" else self.decoder_tokenizer
            self._encoders[side] = FastEncoder(tokenizer)
        return self._encoders[side](texts)

    def arrays(self, sources, targets, stats: SplitStats):
        """(source ids, source lengths, label ids, label lengths) as flat arrays; counts truncated sources and
        targets into `stats`.

        Texts are tokenized whole and cut here, so that each cut is counted (and logged once per split); the
        tokenizer's own "Token indices sequence length is longer than the specified maximum sequence length"
        warning would be about ids that never reach the model, and is not asked for.
        """
        prefix, suffix = special_affixes(self.encoder_tokenizer) if self.source_special_tokens else ([], [])
        keep = self.max_source_length - len(prefix) - len(suffix)
        if keep < 1:
            raise UserError(
                f"data.max_source_length={self.max_source_length} leaves no room for a source token beside the "
                f"encoder tokenizer's {len(prefix) + len(suffix)} special tokens. Fix: data.max_source_length=128."
            )
        ids, lengths = _flat(self.encode("source", sources))
        stats.truncated_sources += int((lengths > keep).sum())
        src = _cut(ids, lengths, keep, prefix, suffix)
        ids, lengths = _flat(self.encode("target", targets))
        stats.truncated_targets += int((lengths > self.max_target_length - 1).sum())
        return *src, *_cut(ids, lengths, self.max_target_length - 1, [], [self.eos_id])


def _cut(ids: np.ndarray, lengths: np.ndarray, keep: int, prefix: list[int], suffix: list[int]):
    """Each sequence of (flat `ids`, `lengths`) cut to `keep` ids and wrapped in prefix and suffix, vectorised:
    (flat ids, lengths)."""
    kept = np.minimum(lengths, keep)
    position = np.arange(len(ids)) - np.repeat(_offsets(lengths)[:-1], lengths)
    body = ids[position < keep]
    out_lengths = kept + len(prefix) + len(suffix)
    starts = _offsets(out_lengths)[:-1]
    out = np.empty(int(out_lengths.sum()), dtype=IDS)
    for j, token in enumerate(prefix):
        out[starts + j] = token
    body_position = np.arange(len(body)) - np.repeat(_offsets(kept)[:-1], kept)
    out[np.repeat(starts + len(prefix), kept) + body_position] = body
    for j, token in enumerate(suffix):
        out[starts + len(prefix) + kept + j] = token
    return out, out_lengths


class _EntryWriter:
    """Appends tokenized chunks to a cache entry's files in a temporary directory."""

    def __init__(self, tmp: Path, with_texts: bool):
        self.tmp = tmp
        self.ids = {stem: (tmp / f"{stem}_ids.bin").open("wb") for stem in ("source", "label")}
        self.lengths: dict[str, list[np.ndarray]] = {"source": [], "label": []}
        self.texts = (tmp / "texts.jsonl").open("w", encoding="utf-8") if with_texts else None
        self.rows = 0

    def add(self, src, src_lengths, lab, lab_lengths, sources, targets) -> None:
        for stem, ids, lengths in (("source", src, src_lengths), ("label", lab, lab_lengths)):
            ids.tofile(self.ids[stem])
            self.lengths[stem].append(lengths.astype(np.int32))
        if self.texts is not None:  # evaluation splits only: a training split's texts would double its size
            self.texts.writelines(
                json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n"
                for s, t in zip(sources, targets, strict=True)
            )
        self.rows += len(src_lengths)

    def close(self) -> None:
        for f in self.ids.values():
            f.close()
        if self.texts is not None:
            self.texts.close()
        for stem, parts in self.lengths.items():
            np.save(
                self.tmp / f"{stem}_lengths.npy", np.concatenate(parts) if parts else np.zeros(0, np.int32)
            )


class Progress:
    """Rows tokenized, with rate and ETA: a bar on a terminal, a log line every `every` seconds elsewhere (a
    SLURM or CI log). Splits under `min_rows` rows stay quiet."""

    def __init__(self, label: str, total: int | None, min_rows: int = 50_000, every: float = 30.0):
        self.label, self.total, self.every = label, total, every
        self.quiet = total is not None and total < min_rows
        self.start = self.last = time.perf_counter()
        self.done = 0
        self.bar = None
        if not self.quiet and sys.stderr.isatty():
            self.bar = tqdm(
                total=total,
                desc=f"tokenizing {label}",
                unit=" rows",
                unit_scale=True,
                file=sys.stderr,
                leave=False,
            )

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.quiet or now - self.last < self.every:
            return
        self.last = now
        rate = self.done / (now - self.start)
        eta = f", about {(self.total - self.done) / rate:.0f}s to go" if self.total and rate else ""
        of = f" of {self.total}" if self.total else ""
        log.info("tokenizing %s: %d%s rows (%.0f rows/s%s)", self.label, self.done, of, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def entry_lock(directory: Path):
    """The lock file next to a cache entry, held while the entry is built: a second process that needs the
    same entry waits here, then finds it built. Released when the process ends, however it ends."""
    lock = FileLock(directory.parent / f".{directory.name}.lock")
    if not lock.acquire(block=False):
        log.info("waiting for another process that is tokenizing %s", directory.name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_or_load(
    *,
    cache_dir: str | Path,
    name: str,
    split: str,
    identity: dict,
    read,
    tokenization: Tokenization,
    with_texts: bool,
) -> TokenizedSplit:
    """The tokenized split from the cache, or tokenize it chunk by chunk (calling `read()`) and cache it.

    Args:
        identity: what names the data (file and mtime, hub id and split, synthetic seed and sizes, columns,
            limits); with the tokenizers' fingerprints and max lengths it keys the cache.
        read: callable returning the split's `PairStream`; only called on a cache miss.
    """
    key_data = {"v": CACHE_VERSION, "data": identity, **tokenization.key()}
    key_data["texts"] = with_texts
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:20]
    directory = Path(cache_dir).expanduser() / f"{name}-{split}-{key}"
    if (directory / "stats.json").is_file() and entry_damage(directory) is None:
        log.info("%s/%s: tokenization cache hit (%s)", name, split, directory)
        return TokenizedSplit.load(directory, with_texts)
    with entry_lock(directory):
        # temporary folders of builds that were killed (none is running: this process holds the lock)
        remove_leftovers(directory)
        damage = entry_damage(directory) if directory.exists() else None
        if directory.exists() and damage is None:  # built by the process this one waited for
            log.info("%s/%s: tokenization cache hit (%s), built by another process", name, split, directory)
            return TokenizedSplit.load(directory, with_texts)
        if damage is not None:
            log.warning(
                "%s/%s: the tokenization cache entry %s is damaged (%s): rebuilt",
                name,
                split,
                directory,
                damage,
            )
        _build(directory, key_data, f"{name}/{split}", read, tokenization, with_texts)
    return TokenizedSplit.load(directory, with_texts)


#: an entry's files, each recorded with its size in files.json when the entry is built
ENTRY_FILES = ("source_ids.bin", "label_ids.bin", "source_lengths.npy", "label_lengths.npy", "stats.json")


def entry_damage(directory: Path) -> str | None:
    """What is wrong with a cache entry, or None when it is whole: every file of files.json there with its
    recorded size, stats.json readable, and the ids files as long as the lengths say. Costs a few stat calls and
    two small reads, not a pass over the data."""
    try:
        recorded = json.loads((directory / "files.json").read_text())
        for name, size in recorded.items():
            actual = (directory / name).stat().st_size
            if actual != size:
                return f"{name} has {actual} bytes, {size} when written"
        SplitStats(**json.loads((directory / "stats.json").read_text()))
        for stem in ("source", "label"):
            total = int(np.load(directory / f"{stem}_lengths.npy").astype(np.int64).sum())
            if (directory / f"{stem}_ids.bin").stat().st_size != total * np.dtype(IDS).itemsize:
                return f"{stem}_ids.bin does not hold the {total} ids its lengths count"
    except FileNotFoundError as err:
        return f"{Path(err.filename).name if err.filename else 'a file'} is missing"
    except (OSError, ValueError, TypeError) as err:
        return f"unreadable: {err}"
    return None


def remove_leftovers(directory: Path) -> None:
    """Remove the temporary folders that killed builds of `directory` left beside it (`.<entry>.XXXX`)."""
    for leftover in directory.parent.glob(f".{directory.name}.*"):
        if leftover.is_dir():
            log.info("removing %s, left by a tokenization that was stopped", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _build(directory: Path, key_data: dict, label: str, read, tokenization: Tokenization, with_texts: bool):
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        stream: PairStream = read()
        stats, progress = stream.stats, Progress(label, stream.total)
        writer = _EntryWriter(tmp, with_texts)
        with tokenizer_threads(tokenization.parallel):
            for sources, targets in stream.chunks:
                # a SLURM preemption stops within a chunk, not after the split
                check_stop(f"tokenizing {label}")
                writer.add(*tokenization.arrays(sources, targets, stats), sources, targets)
                progress.update(len(sources))
        writer.close()
        progress.close()
        (tmp / "stats.json").write_text(json.dumps(stats.__dict__))
        (tmp / "key.json").write_text(json.dumps(key_data, indent=1, default=str))
        sizes = {name: (tmp / name).stat().st_size for name in ENTRY_FILES}
        if with_texts:
            sizes["texts.jsonl"] = (tmp / "texts.jsonl").stat().st_size
        (tmp / "files.json").write_text(json.dumps(sizes))
        os.chmod(tmp, file_mode(directory=True))  # mkdtemp's 0700 would hide a shared cache from the team
        if directory.exists():  # a damaged entry, or one left without its stats.json
            shutil.rmtree(directory)
        os.replace(tmp, directory)  # atomic: a reader sees the whole entry or none
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(err):
            raise disk_full_error(directory.parent, f"the tokenization cache entry {directory.name}") from err
        raise
    seconds = time.perf_counter() - start
    log.info(
        "%s: tokenized %d examples in %.1fs (%.0f/s; tokenization cache miss; saved to %s)",
        label,
        writer.rows,
        seconds,
        writer.rows / max(seconds, 1e-9),
        directory,
    )
    if stats.truncated_sources or stats.truncated_targets:
        log.info(
            "%s: truncated %d sources to %d tokens and %d targets to %d tokens",
            label,
            stats.truncated_sources,
            tokenization.max_source_length,
            stats.truncated_targets,
            tokenization.max_target_length,
        )
