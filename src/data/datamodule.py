"""Seq2seq data for Lightning: splits tokenized once (cached), length-bucketed batches padded per batch."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from src.config.data import DataConfig
from src.data.sources import FieldSpec, pair_stream
from src.data.synthetic import SPLITS
from src.data.tokenized import Tokenization, TokenizedSplit, build_or_load

log = logging.getLogger(__name__)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, in random order, reshuffled every epoch.

    Shuffle all indices, cut them into pools of `batch_size * pool_batches`, sort each pool by source length, then
    target length, and cut it into batches; then shuffle the batches. Padding stays small and batches stay random.
    (Sorting by target length too matters where most sources hit the truncation limit, as in CNN/DailyMail.)
    Under DDP each process takes every world_size-th batch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int = 0,
        pool_batches: int = 50,
        resume: dict | None = None,
        target_lengths: np.ndarray | None = None,
    ):
        self.lengths, self.batch_size, self.seed, self.pool = (
            np.asarray(lengths),
            batch_size,
            seed,
            pool_batches,
        )
        self.target_lengths = (
            np.zeros_like(self.lengths) if target_lengths is None else np.asarray(target_lengths)
        )
        self.epoch = 0
        self.resume = (
            resume if resume is not None else {}
        )  # {"epoch", "skip"}: set when a checkpoint is restored
        self._cached: tuple = (None, [])  # ((epoch, rank, world), that epoch's batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: Lightning calls `set_epoch` at the start of every epoch (a resumed one too) on a DataLoader's
        `sampler` and its `batch_sampler.sampler`, never on the batch sampler. Without this every epoch drew epoch
        0's order, and a run resumed after its first epoch did not skip the batches it had trained on."""
        return self

    def _longest_first(self, chunk: np.ndarray) -> np.ndarray:
        return chunk[np.lexsort((-self.target_lengths[chunk], -self.lengths[chunk]))]

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        """The shuffled indices as batches: pools sorted longest first, each cut into batches of batch_size."""
        pool = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), pool):
            chunk = self._longest_first(order[start : start + pool])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return batches

    def _batches(self) -> list[np.ndarray]:
        rank, world = _rank_and_world()
        key = (self.epoch, rank, world)
        if self._cached[0] == key:  # __len__ and __iter__ of one epoch cut it once
            return self._cached[1]
        rng = np.random.default_rng((self.seed, self.epoch))
        batches = self._cut(rng.permutation(len(self.lengths)))
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
        if world > 1:  # every process gets the same number of batches
            batches = batches[rank : len(batches) - len(batches) % world : world]
        self._cached = (key, batches)
        return batches

    def __iter__(self):
        batches = self._batches()
        skip = self.resume.pop("skip", 0) if self.resume.get("epoch") == self.epoch else 0
        for batch in batches[skip:]:  # a resumed epoch continues where the interrupted run stopped
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self._batches())


class TokenBatchSampler(BucketBatchSampler):
    """Batches filled up to a token budget (`data.max_tokens`, fairseq's `--max-tokens`), not an example count.

    A batch's size is what the Collator pads it to: examples x (its longest source + its longest label), in
    tokens, and it holds as many examples as fit in `max_tokens`. An example that alone exceeds the budget is a
    batch of its own (never dropped, never truncated here); how many there are is logged once. Otherwise as
    BucketBatchSampler: shuffle, cut into pools of about `pool_batches` batches (by unpadded tokens), sort each
    pool longest first and fill batches in that order (little padding), shuffle the batches with the same seeded
    rng, every epoch anew; every example once an epoch; under DDP each process takes every world_size-th batch
    and the remainder is dropped, so every process gets the same number. `resume` skips batches, as there.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        max_tokens: int,
        seed: int = 0,
        pool_batches: int = 50,
        resume: dict | None = None,
        target_lengths: np.ndarray | None = None,
    ):
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int | np.integer) or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r}: a positive number of tokens per batch")
        super().__init__(lengths, 1, seed, pool_batches, resume, target_lengths)
        self.max_tokens = int(max_tokens)
        self.sizes = self.lengths.astype(np.int64) + self.target_lengths.astype(np.int64)
        self.oversize = int((self.sizes > self.max_tokens).sum())  # each one a batch alone, every epoch
        if self.oversize:
            log.warning(
                "data.max_tokens=%d: %d training example(s) alone exceed it (source + label tokens, longest %d); "
                "each is a batch of its own",
                self.max_tokens,
                self.oversize,
                self.sizes.max(),
            )

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        budget, sizes = self.max_tokens, self.sizes[order]
        starts = np.cumsum(sizes) - sizes  # each example's first token in the shuffled stream
        pool_of = starts // (budget * self.pool)
        batches = []
        for chunk in np.split(order, np.flatnonzero(np.diff(pool_of)) + 1):
            chunk = self._longest_first(chunk)
            src, lab = self.lengths[chunk], self.target_lengths[chunk]
            i = 0
            while i < len(chunk):
                # a batch from i is at most budget // (its first example's size) long: no later one is narrower
                w = min(len(chunk) - i, max(1, budget // max(1, int(src[i]) + int(lab[i]))))
                width = np.maximum.accumulate(src[i : i + w]) + np.maximum.accumulate(lab[i : i + w])
                fits = np.arange(1, w + 1) * width <= budget
                n = max(1, w if fits.all() else int(np.argmin(fits)))  # the first example always goes in
                batches.append(chunk[i : i + n])
                i += n
        return batches


class Collator:
    """Pad a batch to its own longest sequence; decoder inputs are the labels shifted right."""

    def __init__(self, split: TokenizedSplit, pad_id: int, decoder_pad_id: int, decoder_start_id: int):
        self.split, self.pad_id, self.decoder_pad_id, self.start_id = (
            split,
            pad_id,
            decoder_pad_id,
            decoder_start_id,
        )

    def __call__(self, indices: list[int]) -> dict:
        s = self.split
        src = [s.source(i) for i in indices]
        lab = [s.label(i) for i in indices]
        B, S, T = len(indices), max(map(len, src)), max(map(len, lab))
        input_ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, S), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)  # pads never count in the loss
        decoder_input_ids = torch.full((B, T), self.decoder_pad_id, dtype=torch.long)
        decoder_attention_mask = torch.zeros((B, T), dtype=torch.long)
        for b, (x, y) in enumerate(zip(src, lab, strict=True)):
            x, y = (
                torch.from_numpy(np.asarray(x, dtype=np.int64)),
                torch.from_numpy(np.asarray(y, dtype=np.int64)),
            )
            input_ids[b, : len(x)] = x
            attention_mask[b, : len(x)] = 1
            labels[b, : len(y)] = y
            decoder_input_ids[b, 0] = self.start_id
            decoder_input_ids[b, 1 : len(y)] = y[:-1]
            # Mask by length, not by pad id: for GPT-2 pad = eos = start, and masking by id hides the start.
            decoder_attention_mask[b, : len(y)] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
            "labels": labels,
            "index": torch.tensor(indices),
            "num_target_tokens": sum(map(len, lab)),
            "lengths": [(len(x), len(y)) for x, y in zip(src, lab, strict=True)],  # (S, T): model FLOPs
        }
        if s.sources is not None:  # evaluation splits carry texts for metrics and predictions.jsonl
            batch["source"] = [s.sources[i] for i in indices]
            batch["target"] = [s.targets[i] for i in indices]
        return batch


class Seq2SeqDataModule(L.LightningDataModule):
    """Train/validation/test loaders for one task.

    Args:
        config: the `data=` config (src.config.data.DataConfig documents each key). `path` (a local directory in
            the dataset's schema) wins over the hub and synthetic loaders; `limit_*` take the first N examples,
            `train_fraction` / `validation_size` seeded random subsets (seed `subset_seed`, the same for every
            run of a grid); the test split is always used whole.
        encoder_tokenizer / decoder_tokenizer: the model's.
        special_ids: decoder_start_token_id, eos_token_id, pad_token_id of the decoder (set_special_tokens).
        seed: the run's seed (the order of training batches).
        max_source_length: a tighter source limit than the config's (a decoder-only model's positions); None: the
            config's.
        source_special_tokens: False: sources without the encoder tokenizer's special tokens (the model's way).
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        encoder_tokenizer,
        decoder_tokenizer,
        special_ids: dict[str, int],
        seed: int = 0,
        max_source_length: int | None = None,
        source_special_tokens: bool = True,
    ):
        super().__init__()
        self.source_special_tokens = source_special_tokens
        c = self.config = config
        self.fields = (
            FieldSpec.of(c.source_column, c.source_join),
            FieldSpec.of(c.target_column, c.target_join),
        )
        self.enc_tok, self.dec_tok, self.special_ids = encoder_tokenizer, decoder_tokenizer, special_ids
        self.max_lengths = (max_source_length or c.max_source_length, c.max_target_length)
        self.batch_size, self.eval_batch_size = c.batch_size, c.eval_batch_size or c.batch_size
        self.seed = seed
        self.limits = {"train": c.limit_train, "validation": c.limit_eval, "test": c.limit_eval}
        self.subsets = {  # kwargs of sources.subset_indices per split; None: the split whole
            "train": None
            if c.train_fraction is None
            else {"fraction": c.train_fraction, "seed": c.subset_seed},
            "validation": None
            if c.validation_size is None
            else {"size": c.validation_size, "seed": c.subset_seed},
            "test": None,
        }
        self.splits: dict[str, TokenizedSplit] = {}
        self.order_state: dict = {}  # where a resumed run's training order continues (callbacks.ResumableOrder)

    def split(self, name: str) -> TokenizedSplit:
        if name not in self.splits:
            c = self.config
            kwargs = dict(
                loader=c.loader,
                split=name,
                split_name=c.splits.get(name),
                path=c.path,
                hub_name=c.hub_name,
                hub_config=c.hub_config,
                hub_revision=c.hub_revision,
                source=self.fields[0],
                target=self.fields[1],
                lowercase=c.lowercase,
                limit=self.limits[name],
                synthetic=asdict(c.synthetic) if c.synthetic else None,
                subset=self.subsets[name],
            )
            self.splits[name] = build_or_load(
                cache_dir=c.cache_dir,
                name=c.name,
                split=name,
                identity=self._identity(kwargs),
                read=lambda: pair_stream(**kwargs),
                tokenization=Tokenization(
                    self.enc_tok,
                    self.dec_tok,
                    *self.max_lengths,
                    self.special_ids["eos_token_id"],
                    self.source_special_tokens,
                    parallel=c.parallel_tokenization,
                ),
                with_texts=name != "train",
            )
            log.info("%s/%s: %d examples", c.name, name, len(self.splits[name]))
        return self.splits[name]

    def _identity(self, kwargs: dict) -> dict:
        """What names this split's data, without reading it (a local file by path, size and mtime)."""
        ident = {k: kwargs[k] for k in ("loader", "split", "split_name", "lowercase", "limit")}
        if kwargs["subset"]:  # only when set, so the cache keys of whole splits stay as they were
            ident["subset"] = kwargs["subset"]
        ident.update(
            source=list(self.fields[0].columns),
            target=list(self.fields[1].columns),
            joins=[self.fields[0].join, self.fields[1].join],
        )
        c = self.config
        if c.path:
            file = Path(c.path).expanduser() / f"{kwargs['split_name'] or kwargs['split']}.jsonl"
            st = file.stat() if file.is_file() else None
            ident.update(file=str(file.resolve()), size=st and st.st_size, mtime=st and st.st_mtime_ns)
        elif c.loader == "synthetic":
            ident.update(synthetic=asdict(c.synthetic))
        else:
            hub = [c.hub_name, c.hub_config] + ([c.hub_revision] if c.hub_revision else [])  # keys as before
            ident.update(hub=hub)
        return ident

    def prepare(self, stages=SPLITS) -> None:
        """Load and check every split up front, so bad data fails before anything is trained or written."""
        for name in stages:
            self.split(name)

    def stats(self) -> dict[str, dict]:
        return {name: dict(split.stats.__dict__) for name, split in self.splits.items()}

    def _collator(self, data: TokenizedSplit) -> Collator:
        return Collator(
            data,
            self.enc_tok.pad_token_id,
            self.special_ids["pad_token_id"],
            self.special_ids["decoder_start_token_id"],
        )

    def target_token_capacity(self) -> int:
        """The most target tokens a training batch holds: batch size x data.max_target_length, or the token
        budget (data.max_tokens). The module divides each batch's summed loss by it, a constant of every batch and
        process, so that the gradients keep the size of a per-token mean until they are normalised."""
        if self.config.max_tokens is not None:
            return self.config.max_tokens
        return self.batch_size * self.max_lengths[1]

    def train_dataloader(self) -> DataLoader:
        data = self.split("train")
        max_tokens = self.config.max_tokens
        sampler = (
            BucketBatchSampler(
                data.source_lengths(),
                self.batch_size,
                seed=self.seed,
                resume=self.order_state,
                target_lengths=data.label_lengths(),
            )
            if max_tokens is None
            else TokenBatchSampler(  # data.batch_size is not used for training batches then
                data.source_lengths(),
                max_tokens,
                seed=self.seed,
                resume=self.order_state,
                target_lengths=data.label_lengths(),
            )
        )
        return DataLoader(
            range(len(data)),
            batch_sampler=sampler,
            collate_fn=self._collator(data),
            num_workers=self.config.num_workers,
            pin_memory=torch.cuda.is_available(),
            # its own generator: creating an iterator would otherwise draw from the global RNG that dropout
            # uses, and a resumed run (which creates its iterators at other moments) would see other masks
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _eval_loader(self, name: str) -> DataLoader:
        # Longest sources first, so batches hold similar lengths; predictions carry their index. Under DDP each
        # process takes a disjoint share (no padding repeats, so split-level metrics count every example once).
        data = self.split(name)
        rank, world = _rank_and_world()
        order = np.argsort(-data.source_lengths(), kind="stable")[rank::world].tolist()
        return DataLoader(
            order,
            batch_size=self.eval_batch_size,
            collate_fn=self._collator(data),
            num_workers=self.config.num_workers,
            pin_memory=torch.cuda.is_available(),
            # its own generator: creating an iterator would otherwise draw from the global RNG that dropout
            # uses, and a resumed run (which creates its iterators at other moments) would see other masks
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
