"""Sources in, predictions out: a trained run or checkpoint of `src.train`, or a directory of `src.export`.

Sources of similar length share a batch; the model's own decoding applies unless a `Decoding` overrides it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from src.data.datamodule import Collator
from src.data.tokenized import Tokenization, TokenizedSplit
from src.models.checkpoints import ENCODER_TOKENIZER
from src.models.decoding import Decoding, gnmt_applied
from src.models.module import decode
from src.models.restore import load_module
from src.run.record import checkpoint_of
from src.system.errors import UserError, one_line


def input_name(path: str) -> str:
    return "standard input" if path == "-" else path


def read_input(path: str) -> list[str | dict | None]:
    """INPUT line by line: a text line as it is, a .jsonl line as its JSON object, None for a blank line (its
    prediction is an empty line). A missing or unreadable file, malformed JSON or no source at all is a UserError."""
    name = input_name(path)
    try:
        # standard input as bytes, decoded here: Python's own decoding of stdin escapes bad bytes (surrogateescape)
        # under a UTF-8 locale, which would reach the tokenizer as text it cannot encode
        if path == "-":
            stdin = getattr(sys.stdin, "buffer", None)  # None: replaced by a text stream (tests, notebooks)
            raw = stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
        else:
            raw = Path(path).expanduser().read_bytes()
        text = raw.decode("utf-8-sig")  # a byte order mark is no part of the first source
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist. Fix: a text file (one source a line), a .jsonl file, or - for standard input."
        ) from None
    except IsADirectoryError:
        raise UserError(
            f"{path} is a directory. Fix: a text file (one source a line), a .jsonl file, or - for standard input."
        ) from None
    except UnicodeDecodeError as err:
        raise UserError(
            f"{name} is not UTF-8 text ({err.reason} at byte {err.start}). Fix: one source a line, UTF-8."
        ) from None
    except OSError as err:
        raise UserError(f"cannot read {name} ({err.strerror or err}). Fix: a file you can read.") from None
    rows: list[str | dict | None] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            rows.append(None)
        elif path.endswith(".jsonl"):
            try:
                row = json.loads(line)
            except ValueError as err:
                raise UserError(f"{name}:{n} is not JSON ({err}). Fix: one JSON object a line.") from None
            if not isinstance(row, dict):
                raise UserError(
                    f"{name}:{n} is a JSON {type(row).__name__}, not an object. Fix: one JSON object a line."
                )
            rows.append(row)
        else:
            rows.append(line)
    if all(row is None for row in rows):
        what = "it is empty" if not rows else f"its {len(rows)} lines are blank"
        fix = (
            'pipe sources in, one a line: echo "a source ." | python -m src.predict MODEL -'
            if path == "-"
            else "one source a line"
        )
        raise UserError(f"no sources in {name} ({what}). Fix: {fix}.")
    return rows


def sources_of(rows: list[str | dict | None], path: str, column: str | None) -> list[str | None]:
    """The source of each row of `read_input` (a .jsonl row's `column`, default `source`); None for a blank line."""
    key = column or "source"
    sources: list[str | None] = []
    for n, row in enumerate(rows, 1):
        if isinstance(row, dict):
            if key not in row:
                raise UserError(
                    f"{input_name(path)}:{n} has no column {key!r} (it has {', '.join(row) or 'none'}). "
                    "Fix: --column <name>."
                )
            row = "" if row[key] is None else str(row[key])
        sources.append(row if row is not None and row.strip() else None)
    return sources


def read_sources(path: str, column: str | None) -> list[str | None]:
    """The sources of INPUT, one a line (None for a blank line): `read_input`, then `sources_of`."""
    return sources_of(read_input(path), path, column)


class Predictor:
    """Sources in, predictions out, with a trained module (run or checkpoint) or an exported directory."""

    def __init__(self, model: str):
        path = Path(model).expanduser()
        if (path / "config.json").is_file():  # an exported (Hugging Face) directory
            from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel, GPT2LMHeadModel

            try:
                config = AutoConfig.from_pretrained(path)
                decoder_only = config.model_type == "gpt2"
                self.hf = (
                    (GPT2LMHeadModel if decoder_only else EncoderDecoderModel).from_pretrained(path).eval()
                )
                self.tok = AutoTokenizer.from_pretrained(path)
                enc = path / ENCODER_TOKENIZER
                self.enc_tok = AutoTokenizer.from_pretrained(enc) if enc.is_dir() else self.tok
            except (OSError, ValueError, KeyError) as err:  # a file missing, cut short or of another program
                raise UserError(
                    f"{model} is not a whole model directory written by src.export ({one_line(err)}). "
                    "Fix: export the run again (python -m src.export RUN --out DIR --force), or give the run."
                ) from None
            self.decoder_only, self.module, self.run = decoder_only, None, {}
            # False: trained on bare sources, which its export recorded (src.models.export)
            self.source_special_tokens = getattr(config, "warmstart_source_special_tokens", True) is not False
            g = self.hf.generation_config
            # the length penalty's form the run was scored with (generation_config.json, src.models.export)
            self.own_decoding = Decoding.of({"length_penalty_form": getattr(g, "length_penalty_form", None)})
            self.special = {
                k: getattr(g, k) for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id")
            }
            self.max_source = 512
            return
        if not path.exists():
            raise UserError(
                f"{model} does not exist. Fix: a run directory, a checkpoint, or an exported directory."
            )
        self.module = load_module(str(checkpoint_of(path))).eval()
        self.run = self.module.run_config
        m, data = self.module, self.run["data"]
        self.max_source = m.source_length(data["max_source_length"], data["max_target_length"])
        self.tokenization = Tokenization(
            m.encoder_tokenizer,
            m.decoder_tokenizer,
            self.max_source,
            data["max_target_length"],
            m.special_ids["eos_token_id"],
            m.source_special_tokens,
        )

    def source_column(self) -> str | None:
        column = self.run.get("data", {}).get("source_column")
        return column if isinstance(column, str) else None

    @torch.no_grad()
    def predict(self, sources: list[str], batch_size: int, decoding: Decoding, progress: bool) -> list[str]:
        """One prediction a source, in batches of similar lengths; `decoding` over the model's own settings."""
        order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))  # similar lengths share a batch
        out: dict[int, str] = {}
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            batches = tqdm(batches, desc="predict", unit="batch", file=sys.stderr)
        if self.module is not None:  # the module decodes with its own settings: override them once
            self.module.decoding = self.module.decoding.override(decoding)
        # for an exported model (the module path decodes through its own `_generate`)
        generation, gnmt = {}, False
        if self.module is None:
            config = self.hf.generation_config
            decoding = self.own_decoding.override(decoding)
            generation = decoding.generate_kwargs(config)
            gnmt = decoding.gnmt and decoding.beam_search(config)
        for idx in batches:
            texts = [sources[i] for i in idx]
            with gnmt_applied(gnmt):
                out.update(zip(idx, self._batch(texts, generation), strict=True))
        return [out[i] for i in range(len(sources))]

    def _batch(self, texts: list[str], generation: dict) -> list[str]:
        if self.module is not None:
            m, ids = self.module, self.module.special_ids
            split = TokenizedSplit.in_memory(texts, [""] * len(texts), self.tokenization)
            batch = Collator(
                split, m.encoder_tokenizer.pad_token_id, ids["pad_token_id"], ids["decoder_start_token_id"]
            )(list(range(len(texts))))
            return m.generate(batch)
        if self.decoder_only:
            start = self.hf.generation_config.decoder_start_token_id
            results = []
            for text in texts:
                ids = self.tok(text, truncation=True, max_length=self.max_source)["input_ids"] + [start]
                new = self.hf.generate(torch.tensor([ids]), **generation)[0, len(ids) :]
                results += decode(self.tok, new[None], self.special)
            return results
        enc = self.enc_tok(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_source,
            add_special_tokens=self.source_special_tokens,
        )
        new = self.hf.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **generation)
        return decode(self.tok, new, self.special)
