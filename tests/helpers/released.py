"""Tiny local imitations of the Rothe et al. (2020) checkpoints on the Hub, and their model-card usage."""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers.normalizers import BertNormalizer
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertGenerationConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GenerationConfig,
)

KINDS = ("roberta2roberta", "bert2bert_wmt")
#: google/roberta2roberta_L-24_{cnn_daily_mail,bbc,gigaword,discofuse,wikisplit}: encoder and decoder share weights.
#: google/bert2bert_L-24_wmt_{de_en,en_de}: not shared.
TIED = {"roberta2roberta": True, "bert2bert_wmt": False}
#: Ids of the released SentencePiece model (BertGenerationConfig defaults; `<unk>` is 100 in
#: google/bert_for_seq_generation_L-24_bbc_encoder, per transformers' tokenizer integration test).
PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 100
#: The wmt repos' vocab.txt (WordPiece, loaded by BertTokenizer); the model card names <pad>, </s>, <s>. Their ids
#: here follow the model config (pad 0, eos 1, bos 2); the BERT-style tokens after them are an assumption.
WORDPIECE_SPECIALS = ["<pad>", "</s>", "<s>", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: The model card's extra arguments to AutoTokenizer for the wmt checkpoints.
WMT_TOKENIZER_KWARGS = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>"}
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def _train_sentencepiece(texts: list[str], vocab_size: int) -> bytes:
    """Train a unigram SentencePiece model with the released special-token ids.

    Ids 3-99 are control symbols (never produced from text), so `<unk>` can sit at 100 as in the released model.
    """
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        bos_id=BOS_ID,
        unk_id=UNK_ID,
        pad_piece="<pad>",
        eos_piece="</s>",
        bos_piece="<s>",
        unk_piece="<unk>",
        control_symbols=[f"<unused{i}>" for i in range(3, UNK_ID)],
        user_defined_symbols=[
            "<::::>"
        ],  # BertGenerationTokenizer's separator, WikiSplit's: within the vocabulary
        minloglevel=2,
    )
    return buf.getvalue()


def _train_wordpiece(texts: list[str], vocab_size: int) -> list[str]:
    """Train a cased WordPiece vocabulary whose first entries are WORDPIECE_SPECIALS."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=WORDPIECE_SPECIALS)
    )
    vocab = tok.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def _load_tokenizer(path: Path | str, kind: str):
    """Load the tokenizer the way the model card does."""
    if kind == "roberta2roberta":
        return AutoTokenizer.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path, **WMT_TOKENIZER_KWARGS)


def _encode(tokenizer, kind: str, text: str) -> list[int]:
    """Token ids of `text` as the model card makes them (the wmt card passes add_special_tokens=False)."""
    extra = {"add_special_tokens": False} if kind == "bert2bert_wmt" else {}
    return tokenizer(text, **extra).input_ids


def _share_encoder_with_decoder(model: EncoderDecoderModel) -> None:
    """Put every encoder parameter into the decoder's BERT body, as `tie_encoder_decoder` did in transformers 3/4.

    Cross-attention and the LM head's bias stay decoder-only; the LM head's matrix is re-tied to the (now shared)
    word embeddings.
    """
    for name, param in model.encoder.named_parameters():
        module_name, _, leaf = name.rpartition(".")
        setattr(model.decoder.bert.get_submodule(module_name), leaf, param)
    model.decoder.lm_head.decoder.weight = model.decoder.bert.embeddings.word_embeddings.weight


def _train_copy(model: EncoderDecoderModel, examples: list[list[int]], steps: int, seed: int) -> None:
    """Teach the tiny model to copy its input and stop, so that `generate` gives input-dependent text ending in EOS."""
    torch.manual_seed(seed)
    examples = [ids[:48] for ids in examples if ids]  # the first words: enough to answer the input, quick
    width = max(len(ids) for ids in examples) + 1
    inputs = torch.full((len(examples), width), PAD_ID)
    mask = torch.zeros_like(inputs)
    labels = torch.full_like(inputs, -100)
    for row, ids in enumerate(examples):
        inputs[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        labels[row, : len(ids) + 1] = torch.tensor([*ids, EOS_ID])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _dedupe(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep one name per shared storage: the alphabetically first, as the Hub's safetensors converter does.

    For a tied roberta2roberta that keeps `decoder.bert.*` and drops the `encoder.*` twins.
    """
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        groups.setdefault(key, []).append(name)
    return {min(names): state_dict[min(names)].contiguous() for names in groups.values()}


def make_released(
    root: Path,
    kind: str,
    texts: list[str],
    *,
    dedupe: bool = False,
    vocab_size: int = 300,
    train_steps: int = 60,
    seed: int = 0,
    wmt_tokenizer: str = "wordpiece",
) -> Path:
    """Write a tiny imitation of a released Rothe et al. (2020) checkpoint to `root / kind`.

    The directory holds only the files the Hub repository has: config.json, generation_config.json, the weights
    and the tokenizer's vocabulary file (no tokenizer_config.json: AutoTokenizer picks the class from config.json).

    - roberta2roberta (google/roberta2roberta_L-24_*): spiece.model, read by BertGenerationTokenizer (chosen
      from the encoder's model_type `bert-generation`); `tie_encoder_decoder: true`, and the weights really are
      shared, as in the released file (1.82 GB: one storage per encoder/decoder pair). transformers 5 ignores
      the flag, but loading this .bin in float32 keeps the aliasing: encoder and decoder parameters are distinct
      Parameter objects over one storage (lost on any dtype or device conversion).
    - bert2bert_wmt (google/bert2bert_L-24_wmt_*): vocab.txt, read by BertTokenizer (config.json names
      `tokenizer_class`); no sharing. `wmt_tokenizer="sentencepiece"` writes spiece.model instead.

    Args:
        root: folder to write into; the checkpoint is `root / kind`.
        kind: "roberta2roberta" or "bert2bert_wmt".
        texts: text to train the vocabulary on (and the copy task on).
        dedupe: False writes pytorch_model.bin with every encoder.* and decoder.* tensor (storage shared where
            tied), the layout of the Hub repos' main branch. True writes model.safetensors with one name per
            shared tensor (decoder.bert.* kept, encoder.* twins dropped), the layout the Hub's safetensors
            converter produces; transformers 5 then loads the encoder randomly initialised (its load report
            lists every encoder.* key as MISSING).
        vocab_size: vocabulary size to aim for (SentencePiece may give fewer pieces on little text).
        train_steps: steps of copy training (0: random weights, whose greedy output is often one repeated token).
        seed: seed for the weights and the training.
        wmt_tokenizer: "wordpiece" (as released) or "sentencepiece", for bert2bert_wmt only.

    Returns:
        The checkpoint directory.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if wmt_tokenizer not in ("wordpiece", "sentencepiece"):
        raise ValueError(f"wmt_tokenizer must be 'wordpiece' or 'sentencepiece', not {wmt_tokenizer!r}")
    out = Path(root) / kind
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    if kind == "bert2bert_wmt" and wmt_tokenizer == "wordpiece":
        vocab = _train_wordpiece(texts, vocab_size)
        (out / "vocab.txt").write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
        n_vocab = len(vocab)
        extra["tokenizer_class"] = "BertTokenizer"
    else:
        model_bytes = _train_sentencepiece(texts, vocab_size)
        (out / "spiece.model").write_bytes(model_bytes)
        n_vocab = spm.SentencePieceProcessor(model_proto=model_bytes).get_piece_size()

    ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    encoder = BertGenerationConfig(vocab_size=n_vocab, **TINY, **ids)
    decoder = BertGenerationConfig(
        vocab_size=n_vocab, **TINY, **ids, is_decoder=True, add_cross_attention=True
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, tie_encoder_decoder=TIED[kind], decoder_start_token_id=BOS_ID, **ids, **extra
    )
    config.save_pretrained(out)  # before any tokenizer load: AutoTokenizer reads the class from it
    GenerationConfig(decoder_start_token_id=BOS_ID, **ids).save_pretrained(out)
    torch.manual_seed(seed)
    model = EncoderDecoderModel(config=config)
    if TIED[kind]:
        _share_encoder_with_decoder(model)
    if train_steps:
        tokenizer = _load_tokenizer(out, kind)
        _train_copy(model, [_encode(tokenizer, kind, text) for text in texts], train_steps, seed)

    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    if dedupe:
        save_file(_dedupe(state), out / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(state, out / "pytorch_model.bin")
    return out


def card_predictions(path: Path | str, kind: str, sources: list[str], **generate_kwargs) -> list[str]:
    """Predict as the model card says: AutoTokenizer, AutoModelForSeq2SeqLM, one `generate` per source.

    `generate` runs with the checkpoint's generation_config.json (decoder_start 2, eos 1, pad 0) and transformers'
    defaults otherwise: greedy, and 20 new tokens after the start token (max_length 21, with a UserWarning),
    unless `generate_kwargs` says otherwise. The tokenizer adds no special tokens (roberta2roberta: the
    BertGenerationTokenizer never does; wmt: the card passes add_special_tokens=False, which drops [CLS]/[SEP]).

    Args:
        path: a checkpoint directory (or Hub id).
        kind: "roberta2roberta" or "bert2bert_wmt" (how the card tokenizes).
        sources: inputs, one at a time, unpadded, without attention_mask, as in the card.
        **generate_kwargs: passed to `model.generate`.

    Returns:
        One decoded string per source (skip_special_tokens=True).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    tokenizer = _load_tokenizer(path, kind)
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    extra = {"add_special_tokens": False} if kind == "bert2bert_wmt" else {}
    predictions = []
    for source in sources:
        input_ids = tokenizer(source, return_tensors="pt", **extra).input_ids
        output_ids = model.generate(input_ids, **generate_kwargs)[0]
        predictions.append(tokenizer.decode(output_ids, skip_special_tokens=True))
    return predictions
