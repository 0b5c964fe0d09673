"""Tokenized splits, cached on disk and memory-mapped, keyed by (data, split, tokenizers, max lengths)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.data.sources import SplitStats
from src.models.special_tokens import special_affixes

log = logging.getLogger(__name__)
CACHE_VERSION = 1
_CHUNK = 2048  # examples per tokenizer call: bounds memory on large splits


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides a tokenizer's ids: its serialised model, class and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps(
        [type(tokenizer).__name__, tokenizer.all_special_tokens, getattr(tokenizer, "do_lower_case", None)]
    )
    return hashlib.sha256((body + extra).encode()).hexdigest()[:16]


def _ragged(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 ids and int64 offsets: sequence i is ids[offsets[i]:offsets[i+1]]."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    ids = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets


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
            np.load(directory / "source_ids.npy", mmap_mode="r"),
            np.load(directory / "source_offsets.npy"),
            np.load(directory / "label_ids.npy", mmap_mode="r"),
            np.load(directory / "label_offsets.npy"),
            SplitStats(**json.loads((directory / "stats.json").read_text())),
            texts,
        )

    @classmethod
    def in_memory(cls, sources: list[str], targets: list[str], tokenization: Tokenization) -> TokenizedSplit:
        """Tokenize pairs without the cache (scripts, tests)."""
        stats = SplitStats(rows=len(sources))
        src, lab = tokenization.pairs(sources, targets, stats)
        return cls(*_ragged(src), *_ragged(lab), stats, (list(sources), list(targets)))

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

    def key(self) -> dict:
        """What of this decides the ids, for the cache key."""
        return {
            "enc": tokenizer_fingerprint(self.encoder_tokenizer),
            "dec": tokenizer_fingerprint(self.decoder_tokenizer),
            "max": [self.max_source_length, self.max_target_length],
            "eos": self.eos_id,
            **({} if self.source_special_tokens else {"bare_sources": True}),
        }

    def pairs(self, sources, targets, stats: SplitStats):
        """(source ids, label ids); counts truncated sources and targets into `stats`.

        Texts are tokenized whole and cut here, so that each cut is counted (and logged once per split);
        verbose=False: the tokenizer's own "Token indices sequence length is longer than the specified maximum
        sequence length" warning would be about ids that never reach the model.
        """
        enc, dec, max_target = self.encoder_tokenizer, self.decoder_tokenizer, self.max_target_length
        prefix, suffix = special_affixes(enc) if self.source_special_tokens else ([], [])
        keep = self.max_source_length - len(prefix) - len(suffix)
        src_ids, lab_ids = [], []
        for start in range(0, len(sources), _CHUNK):
            chunk = slice(start, start + _CHUNK)
            for ids in enc(sources[chunk], add_special_tokens=False, verbose=False)["input_ids"]:
                stats.truncated_sources += len(ids) > keep
                src_ids.append(prefix + ids[:keep] + suffix)
            for ids in dec(targets[chunk], add_special_tokens=False, verbose=False)["input_ids"]:
                stats.truncated_targets += len(ids) > max_target - 1
                lab_ids.append(ids[: max_target - 1] + [self.eos_id])
        return src_ids, lab_ids


def build_or_load(
    *,
    cache_dir: str | Path,
    name: str,
    split: str,
    identity: dict,
    load_pairs,
    tokenization: Tokenization,
    with_texts: bool,
) -> TokenizedSplit:
    """The tokenized split from the cache, or tokenize it (calling `load_pairs()`) and cache it.

    Args:
        identity: what names the data (file and mtime, hub id and split, synthetic seed and sizes, columns,
            limits); with the tokenizers' fingerprints and max lengths it keys the cache.
        load_pairs: callable returning (sources, targets, stats); only called on a cache miss.
    """
    key_data = {"v": CACHE_VERSION, "data": identity, **tokenization.key()}
    key_data["texts"] = with_texts
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:20]
    directory = Path(cache_dir).expanduser() / f"{name}-{split}-{key}"
    if (directory / "stats.json").is_file():
        log.info("%s/%s: tokenization cache hit (%s)", name, split, directory)
        return TokenizedSplit.load(directory, with_texts)

    start = time.perf_counter()
    sources, targets, stats = load_pairs()
    src_ids, lab_ids = tokenization.pairs(sources, targets, stats)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        for stem, seqs in (("source", src_ids), ("label", lab_ids)):
            ids, offsets = _ragged(seqs)
            np.save(tmp / f"{stem}_ids.npy", ids)
            np.save(tmp / f"{stem}_offsets.npy", offsets)
        if with_texts:  # evaluation splits only: a training split's texts would double its size on disk
            with (tmp / "texts.jsonl").open("w", encoding="utf-8") as f:
                for s, t in zip(sources, targets, strict=True):
                    f.write(json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n")
        (tmp / "stats.json").write_text(json.dumps(stats.__dict__))
        (tmp / "key.json").write_text(json.dumps(key_data, indent=1, default=str))
        try:
            os.replace(tmp, directory)  # atomic: another process sees the whole entry or none
        except OSError:  # another process cached the same split first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "%s/%s: tokenized %d examples in %.1fs (tokenization cache miss; saved to %s)",
        name,
        split,
        len(src_ids),
        time.perf_counter() - start,
        directory,
    )
    if stats.truncated_sources or stats.truncated_targets:
        log.info(
            "%s/%s: truncated %d sources to %d tokens and %d targets to %d tokens",
            name,
            split,
            stats.truncated_sources,
            tokenization.max_source_length,
            stats.truncated_targets,
            tokenization.max_target_length,
        )
    return TokenizedSplit.load(directory, with_texts)
