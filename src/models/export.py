"""A trained Seq2SeqModule as a Hugging Face model directory (what `python -m src.export` writes)."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from src.models.checkpoints import ENCODER_TOKENIZER
from src.models.module import Seq2SeqModule, tokenizer_files
from src.system.errors import UserError

log = logging.getLogger(__name__)


def hf_model(module: Seq2SeqModule):
    """The transformers model inside: the EncoderDecoderModel, or the decoder-only LM (variant gpt)."""
    return module.model.decoder if module.model.encoder is None else module.model


#: what an export writes, hence what replacing one (`python -m src.export --force`) replaces: the model and its
#: decoding, the tokenizers (the decoder's files of any kind; the encoder's in encoder_tokenizer/) and the card
EXPORT_NAMES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
    ENCODER_TOKENIZER,
    "README.md",
)
SHARDS = "model-*-of-*.safetensors"  # the weights of a large model, in pieces


def is_export_file(name: str) -> bool:
    """Whether `name` (an entry of a directory) is one an export writes."""
    return name in EXPORT_NAMES or fnmatch.fnmatch(name, SHARDS)


def export(module: Seq2SeqModule, out: Path, run: dict | None = None, metrics: dict | None = None) -> Path:
    """Write `module` as a Hugging Face model directory (see the module docstring); returns `out`.

    The files are written into a new sibling directory first, then moved into place: `out` never holds a
    half-written export. A new `out` is that directory, renamed; into an existing one only the export's own files
    (`EXPORT_NAMES`) go, replacing those of an earlier export, and every other file there is left as it was
    (`python -m src.export` refuses a non-empty directory unless --force)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a directory. Fix: choose a new directory to export to.")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = out.parent / f".{out.name}.export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        write_export(module, staging, run or {}, metrics or {})
        if out.exists():
            move_into(staging, out)
            staging.rmdir()
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported to %s", out)
    return out


def remove_stale_staging(out: Path) -> None:
    """Remove the staging directories of exports to `out` whose process is gone (a killed export leaves its
    hundreds of MB beside `out`); one of a process still running is left alone."""
    for staging in out.parent.glob(f".{out.name}.export-*"):
        pid = staging.name.removeprefix(f".{out.name}.export-").split("-")[0]
        if staging.is_dir() and pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by an export that was stopped", staging)
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def move_into(staging: Path, out: Path) -> None:
    """Put the export in `staging` into the existing directory `out`: an earlier export's files (and any of the new
    ones' names) go first, then the new ones are renamed in, config.json last (what marks a directory as a model);
    every other file is left alone."""
    new = {entry.name for entry in staging.iterdir()}
    for entry in sorted(out.iterdir()):
        if is_export_file(entry.name) or entry.name in new:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):
        entry.rename(out / entry.name)


def write_export(module: Seq2SeqModule, out: Path, run: dict, metrics: dict) -> None:
    """The export's files, written into the (new, empty) directory `out`."""
    model = hf_model(module)
    gen = model.generation_config
    # the run's decoding is what generate() does by default (greedy: without the beam-search-only settings)
    for key, value in module.decoding.generate_kwargs(gen).items():
        setattr(gen, key, float(value) if key == "length_penalty" else value)
    gen._from_model_config = False  # the run's own decoding: reloaded as written (extra keys included)
    if module.decoding.gnmt and module.decoding.beam_search(gen):
        # no setting of plain transformers: src.predict reads it, the model card explains it
        gen.length_penalty_form = "gnmt"
    if (gen.num_beams or 1) == 1:
        gen.early_stopping = False  # a beam-search setting, unused by greedy decoding (and refused beside it)
    decoder_only = module.model.encoder is None
    model.config.architectures = ["GPT2LMHeadModel" if decoder_only else "EncoderDecoderModel"]
    if not module.source_special_tokens:  # trained on bare sources (google/bert2bert_L-24_wmt_*): say so
        model.config.warmstart_source_special_tokens = False
    # Weights shared between encoder and decoder (sharing=embeddings / shared) are written once per place:
    # transformers 5 reloads an EncoderDecoderModel with its two sides untied, holding equal values.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    model.save_pretrained(out, state_dict=state)
    for tokenizer in (module.encoder_tokenizer, module.decoder_tokenizer):
        tokenizer.clean_up_tokenization_spaces = False  # plain transformers decodes as the run was scored
    module.decoder_tokenizer.save_pretrained(out)
    if not decoder_only and tokenizer_files(module.encoder_tokenizer) != tokenizer_files(
        module.decoder_tokenizer
    ):
        module.encoder_tokenizer.save_pretrained(out / ENCODER_TOKENIZER)
    (out / "README.md").write_text(model_card(module, run, metrics, decoder_only))
    unknown = sorted(p.name for p in out.iterdir() if not is_export_file(p.name))
    if unknown:  # replaced by the next export of this kind, but left behind by one that does not write them
        log.debug("export files EXPORT_NAMES does not list: %s", ", ".join(unknown))


def penalty_note(module: Seq2SeqModule, generation_config) -> list[str]:
    """The model card's line on the length penalty the test metrics were scored with."""
    if not module.decoding.beam_search(generation_config):
        return []
    alpha = generation_config.length_penalty
    if module.decoding.gnmt:
        return [
            f"- length penalty: GNMT's, a beam's log-probability / ((5 + length) / 6)^{alpha} (tensor2tensor's and "
            "the paper's): the test metrics were scored with it. Plain transformers' `generate` divides by "
            f"length^{alpha} instead, so its beam outputs can differ; `python -m src.predict DIR` applies the "
            "GNMT form (`length_penalty_form` in generation_config.json)."
        ]
    return [f"- length penalty: transformers' (a beam's log-probability / length^{alpha})"]


def model_card(module: Seq2SeqModule, run: dict, metrics: dict, decoder_only: bool) -> str:
    spec, b = module.hparams.model, module.budget
    data = run.get("data", {})
    variant = (
        run.get("variant")
        or f"{run.get('encoder', {}).get('name', '?')}2{run.get('decoder', {}).get('name', '?')}"
    )
    sharing = spec.get("sharing", "none")
    test = metrics.get("test", {})
    lines = [
        f"# {variant} on {data.get('name', '?')}",
        "",
        "A warm-started encoder-decoder model (Rothe, Narayan & Severyn, TACL 2020), trained with warmstart.",
        "",
        f"- encoder: {spec.get('encoder') or 'none (decoder-only: the source is a prefix of the decoder)'}"
        f" ({spec.get('encoder_weights')}); decoder: {spec.get('decoder')} ({spec.get('decoder_weights')})",
        f"- sharing: {sharing}"
        + (
            " (tied while training; transformers 5 reloads the two sides untied, with equal values, so outputs "
            "are the same)"
            if sharing != "none" and not decoder_only
            else ""
        ),
        f"- parameters: {b.total / 1e6:.1f}M ({b.embeddings / 1e6:.1f}M embeddings, "
        f"{b.from_checkpoint / 1e6:.1f}M from checkpoints, {b.random / 1e6:.1f}M random)",
        f"- data: {data.get('name', '?')}, sources up to {data.get('max_source_length', '?')} tokens, targets up to "
        f"{data.get('max_target_length', '?')}",
        f"- training: {metrics.get('train', {}).get('steps', '?')} steps, seed {run.get('seed', '?')}",
        f"- decoding (generation_config.json): {json.dumps(module.decoding.kwargs(), sort_keys=True)}",
        *penalty_note(module, hf_model(module).generation_config),
        "",
        "## Test metrics",
        "",
        *(f"- {k}: {v:.2f}" for k, v in sorted(test.items())),
        "",
        "## Use",
        "",
        "```python",
    ]
    if decoder_only:
        lines += [
            "from transformers import AutoTokenizer, GPT2LMHeadModel",
            "tok, model = AutoTokenizer.from_pretrained(DIR), GPT2LMHeadModel.from_pretrained(DIR)",
            "ids = tok(source)['input_ids'] + [model.generation_config.decoder_start_token_id]",
            "out = model.generate(torch.tensor([ids]))[0, len(ids):]",
        ]
    else:
        lines += [
            "from transformers import AutoTokenizer, EncoderDecoderModel",
            f"model = EncoderDecoderModel.from_pretrained(DIR)  # encoder tokenizer: DIR/{ENCODER_TOKENIZER} if present",
            "batch = encoder_tokenizer(sources, return_tensors='pt', padding=True, truncation=True)",
            "out = model.generate(**batch)",
        ]
    lines += [
        "# scored as decoded without the tokenizer's clean-up of spaces",
        "print(tok.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False))",
        "```",
        "",
    ]
    return "\n".join(lines)
