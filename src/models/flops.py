"""Useful model FLOPs of a training example: what MFU (model FLOPs utilisation) divides by the device's peak."""

from __future__ import annotations


def _sizes(cfg) -> tuple[int, int, int, int]:
    """(layers, hidden, intermediate, vocabulary) of a BERT-family or GPT-2 config."""
    if cfg.model_type == "gpt2":
        return cfg.n_layer, cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd, cfg.vocab_size
    return cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size


def model_configs(model) -> tuple[object | None, object]:
    """(encoder config or None for the decoder-only layout, decoder config) of a built model."""
    if getattr(model, "encoder", None) is None:
        return None, model.config
    return model.config.encoder, model.config.decoder


def train_flops(enc_cfg, dec_cfg, source_tokens: int, target_tokens: int) -> float:
    """FLOPs of one training example (forward + backward = 3 x forward), real tokens only, 2 per multiply-add.

    Counted: the encoder's layers on S source tokens; the decoder's on T target tokens, with cross-attention
    keys/values on the source; the attention products (4 S^2 H per encoder layer, 4 T^2 H and 4 S T H per decoder
    layer); the LM head (BERT's transform + projection, GPT-2's projection) on T. Padding counts nothing, so two
    systems timed on the same examples compare by their FLOP rates exactly as by their speeds.

    Args:
        enc_cfg: the encoder's config, or None for the decoder-only layout (the source is a prefix of the decoder:
            S + T tokens through its layers, the head on T).
        dec_cfg: the decoder's config (a BERT-family decoder with cross-attention, or GPT-2).
        source_tokens, target_tokens: S and T of this example.
    """
    S, T = source_tokens, target_tokens
    Ld, Hd, Id, V = _sizes(dec_cfg)
    head = T * Hd * V + (T * Hd * Hd if dec_cfg.model_type != "gpt2" else 0)
    if enc_cfg is None:
        N = S + T
        decoder = Ld * (N * (4 * Hd * Hd + 2 * Hd * Id) + 2 * N * N * Hd)
        return 3 * 2 * (decoder + head)
    Le, He, Ie, _ = _sizes(enc_cfg)
    encoder = Le * (S * (4 * He * He + 2 * He * Ie) + 2 * S * S * He)
    decoder = Ld * (T * (6 * Hd * Hd + 2 * Hd * Id) + S * 2 * He * Hd + 2 * T * T * Hd + 2 * S * T * Hd)
    return 3 * 2 * (encoder + decoder + head)
