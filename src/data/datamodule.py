"""Seq2seq data: rows from the synthetic task or JSONL files, tokenized once, padded per batch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from src.data.synthetic import SPLITS, make_synthetic
from src.errors import UserError

log = logging.getLogger(__name__)
LOADERS = ("synthetic", "jsonl")


def read_jsonl(path: Path, source_column: str, target_column: str) -> list[tuple[str, str]]:
    """(source, target) pairs of one JSONL file; rows with empty or non-string fields are dropped and counted."""
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.jsonl")) if path.parent.is_dir() else []
        raise UserError(
            f"missing data file {path} (found: {', '.join(found) or 'no .jsonl files'}). "
            "Fix: data.path=DIR holding train.jsonl, validation.jsonl and test.jsonl."
        )
    rows, dropped = [], 0
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
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
            missing = [c for c in (source_column, target_column) if c not in record]
            if missing:
                raise UserError(
                    f"{path} line {line_no} has no column {missing[0]!r} (columns: {', '.join(record)}). "
                    f"Fix: data.source_column=... / data.target_column=... naming columns the file has."
                )
            src, tgt = record[source_column], record[target_column]
            if not (isinstance(src, str) and isinstance(tgt, str) and src.strip() and tgt.strip()):
                dropped += 1
                continue
            rows.append((src, tgt))
    if dropped:
        log.warning("%s: dropped %d rows with empty or non-string fields", path, dropped)
    return rows


def load_split(
    loader: str,
    split: str,
    *,
    path: str | None,
    source_column: str,
    target_column: str,
    synthetic: dict | None,
) -> list[tuple[str, str]]:
    """The (source, target) pairs of one split; raises a UserError for an empty split."""
    if loader == "synthetic":
        sizes = {s: int(synthetic[f"num_{s}"]) for s in SPLITS}
        rows = [(r["source"], r["target"]) for r in make_synthetic(sizes, seed=int(synthetic["seed"]))[split]]
        where = f"synthetic task (data.synthetic.num_{split})"
    elif loader == "jsonl":
        if not path:
            raise UserError(
                "data=jsonl needs a directory. Fix: data.path=DIR holding train/validation/test .jsonl"
            )
        file = Path(path).expanduser() / f"{split}.jsonl"
        rows = read_jsonl(file, source_column, target_column)
        where = str(file)
    else:
        raise UserError(f"unknown data loader {loader!r}; choose one of {LOADERS}")
    if not rows:
        raise UserError(f"the {split} split is empty: {where} has no usable examples. Fix: give it examples.")
    return rows


class TokenizedSplit(torch.utils.data.Dataset):
    """Token ids of one split, kept as Python lists: padding happens per batch in `collate`."""

    def __init__(
        self, rows, encoder_tokenizer, decoder_tokenizer, max_source_length, max_target_length, eos_id
    ):
        self.sources = [s for s, _ in rows]
        self.targets = [t for _, t in rows]
        self.input_ids = encoder_tokenizer(self.sources, truncation=True, max_length=max_source_length)[
            "input_ids"
        ]
        # Targets carry no start token (the model prepends decoder_start) and always end with EOS, so a decoder
        # without EOS of its own (GPT-2) learns to stop.
        ids = decoder_tokenizer(
            self.targets, add_special_tokens=False, truncation=True, max_length=max_target_length - 1
        )["input_ids"]
        self.labels = [t + [eos_id] for t in ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> int:
        return i


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
        src = [s.input_ids[i] for i in indices]
        lab = [s.labels[i] for i in indices]
        B, S, T = len(indices), max(map(len, src)), max(map(len, lab))
        input_ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, S), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)  # pads never count in the loss
        decoder_input_ids = torch.full((B, T), self.decoder_pad_id, dtype=torch.long)
        decoder_attention_mask = torch.zeros((B, T), dtype=torch.long)
        for b, (x, y) in enumerate(zip(src, lab, strict=True)):
            input_ids[b, : len(x)] = torch.tensor(x)
            attention_mask[b, : len(x)] = 1
            labels[b, : len(y)] = torch.tensor(y)
            decoder_input_ids[b, : len(y)] = torch.tensor([self.start_id, *y[:-1]])
            # Mask by length, not by pad id: for GPT-2 pad = eos = start, and masking by id hides the start.
            decoder_attention_mask[b, : len(y)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
            "labels": labels,
            "index": torch.tensor(indices),
            "num_target_tokens": sum(map(len, lab)),
            "source": [s.sources[i] for i in indices],
            "target": [s.targets[i] for i in indices],
        }


class Seq2SeqDataModule(L.LightningDataModule):
    """Train/validation/test loaders for one task.

    Args:
        loader: "synthetic" or "jsonl".
        path: directory of `{train,validation,test}.jsonl` (jsonl only).
        special_ids: decoder_start_token_id, eos_token_id, pad_token_id of the decoder (set_special_tokens).
        max_source_length / max_target_length: truncation limits in tokens (the target's includes EOS).
    """

    def __init__(
        self,
        *,
        loader: str,
        encoder_tokenizer,
        decoder_tokenizer,
        special_ids: dict[str, int],
        path: str | None = None,
        source_column: str = "source",
        target_column: str = "target",
        max_source_length: int = 512,
        max_target_length: int = 128,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        synthetic: dict | None = None,
    ):
        super().__init__()
        self.loader, self.path, self.synthetic = loader, path, synthetic
        self.columns = (source_column, target_column)
        self.enc_tok, self.dec_tok, self.special_ids = encoder_tokenizer, decoder_tokenizer, special_ids
        self.max_lengths = (max_source_length, max_target_length)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.splits: dict[str, TokenizedSplit] = {}

    def split(self, name: str) -> TokenizedSplit:
        if name not in self.splits:
            rows = load_split(
                self.loader,
                name,
                path=self.path,
                source_column=self.columns[0],
                target_column=self.columns[1],
                synthetic=self.synthetic,
            )
            self.splits[name] = TokenizedSplit(
                rows, self.enc_tok, self.dec_tok, *self.max_lengths, eos_id=self.special_ids["eos_token_id"]
            )
            log.info("%s: %d examples", name, len(rows))
        return self.splits[name]

    def prepare(self, stages=SPLITS) -> None:
        """Load and check every split up front, so bad data fails before anything is trained or written."""
        for name in stages:
            self.split(name)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        data = self.split(name)
        collate = Collator(
            data,
            self.enc_tok.pad_token_id,
            self.special_ids["pad_token_id"],
            self.special_ids["decoder_start_token_id"],
        )
        if shuffle:
            generator = torch.Generator().manual_seed(self.seed)
            return DataLoader(
                data,
                batch_size=self.batch_size,
                shuffle=True,
                generator=generator,
                collate_fn=collate,
                num_workers=self.num_workers,
            )
        # Evaluation: longest sources first, so batches hold similar lengths; predictions carry their index.
        order = sorted(range(len(data)), key=lambda i: -len(data.input_ids[i]))
        return DataLoader(
            order, batch_size=self.eval_batch_size, collate_fn=collate, num_workers=self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
