"""The LightningModule: teacher-forced training on labels, validation loss and generation metrics."""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from transformers import EncoderDecoderModel
from transformers.modeling_outputs import BaseModelOutput

from src.metrics.health import collapse, output_health
from src.metrics.text import GenerationMetrics
from src.models.builder import BuildFrom, attention_used, build, usable_positions
from src.models.checkpoints import load_tokenizer
from src.models.decoding import Decoding, gnmt_applied
from src.models.optim import build_optimizer
from src.models.spec import ModelSpec
from src.models.special_tokens import special_affixes
from src.system.errors import UserError

log = logging.getLogger(__name__)


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """A tokenizer as {file name: bytes}, so a checkpoint carries its tokenizers and needs no download."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def tokenizer_from_files(files: dict[str, bytes]):
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return load_tokenizer(tmp)


def decode(tokenizer, ids, special: dict[str, int]) -> list[str]:
    """Generated ids (batch, length) -> texts as the user reads them, outer spaces stripped.

    Never rewritten: the tokenizer's clean-up of spaces is off. Special tokens are dropped (start, EOS, pad,
    unknown, mask, the tokenizer's own [CLS]/[SEP]), except one that stands in the task's text: a SentencePiece
    BertGeneration tokenizer's separator `<::::>` (WikiSplit's), which is neither its start, EOS, pad nor a token
    it wraps sequences in, is written out. The metrics score these texts in their canonical form
    (`src.metrics.text.canonical`).

    Args:
        special: the model's decoder_start_token_id, eos_token_id and pad_token_id.
    """
    drop = set(tokenizer.all_special_ids) | set(special.values())
    sep = tokenizer.sep_token_id
    if sep is not None and sep not in special.values() and sep not in sum(special_affixes(tokenizer), []):
        drop.discard(sep)
    rows = ids.tolist() if hasattr(ids, "tolist") else ids
    kept = [[t for t in row if t not in drop] for row in rows]
    # clean_up_tokenization_spaces=False whatever the tokenizer's saved config says: its clean-up (on in many
    # checkpoints saved by transformers 4) rewrites "did n't" as "didn't", a word boundary the model did not write
    texts = tokenizer.batch_decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [t.strip() for t in texts]


def lm_head(model) -> torch.nn.Module | None:
    """The decoder's output head (hidden states -> vocabulary logits) of an EncoderDecoderModel, or None.

    BERT's is `cls` (transform + projection), RoBERTa's and GPT-2's `lm_head`; both are applied position-wise.
    """
    if not isinstance(model, EncoderDecoderModel):
        return None
    dec = model.decoder
    head = getattr(dec, "cls", None)
    if head is None:
        head = getattr(dec, "lm_head", None)
    return head if isinstance(head, torch.nn.Module) and dec.base_model is not dec else None


class NonFiniteLoss(UserError):
    """The training loss became NaN or inf."""


class Seq2SeqModule(L.LightningModule):
    """Warm-started encoder-decoder training.

    Args:
        model: the `ModelSpec` as a dict (checkpoints, which sides are pretrained, sharing, positions).
        optimizer: keyword arguments of `build_optimizer` (name, lr, warmup_steps, ...).
        generation: keyword arguments of `generate` (num_beams, max_new_tokens, length_penalty, ...).
        metrics: names of generation metrics (see `GenerationMetrics`).
        bleu_lowercase: sacreBLEU on lowercased text (uncased BLEU, as the paper reports WMT).
        scored_text: the form every metric scores (`canonical` or `as_given`; `src.metrics.text`).
        rouge_stemmer: ROUGE with Porter stemming (the paper's presets), or without (the blog's figures).
        skip_nonfinite: skip batches whose loss is NaN/inf (counted) instead of stopping the run.
        label_smoothing: ε of the training loss (0: plain cross-entropy); validation and test losses, and the
            logged train/loss, stay the unsmoothed per-token NLL.
        gen_val_batches: validation batches decoded for generation metrics per validation; None = all.
        built: the architecture and tokenizers of a trained model, which a checkpoint adds to these arguments:
            with it the model is rebuilt offline with random weights, for the checkpoint's state dict, so
            `Seq2SeqModule.load_from_checkpoint(path)` needs nothing else. Not a hyperparameter.
    """

    def __init__(
        self,
        model: dict,
        optimizer: dict,
        generation: dict,
        metrics=("rouge1", "rouge2", "rougeL", "exact"),
        gen_val_batches: int | None = 2,
        bleu_lowercase: bool = False,
        skip_nonfinite: bool = False,
        scored_text: str = "canonical",
        rouge_stemmer: bool = True,
        label_smoothing: float = 0.0,
        built: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["built"], logger=False)  # the run logs the whole config, flattened
        spec = ModelSpec(**model)
        if built is None:
            made = build(spec)
        else:
            files = built.get("tokenizers")  # None: no tokenizers (the caller sets special tokens itself)
            tokenizers = files and tuple(tokenizer_from_files(files[side]) for side in ("encoder", "decoder"))
            made = build(spec, BuildFrom.RANDOM, arch=built["arch"], tokenizers=tokenizers)
        self.model = made.model.train()  # from_pretrained returns eval mode: dropout would stay off
        self.encoder_tokenizer, self.decoder_tokenizer = made.encoder_tokenizer, made.decoder_tokenizer
        self.arch, self.budget = made.arch, made.budget
        self.source_special_tokens = spec.source_special_tokens
        self.decoding = Decoding.of(generation)  # replaced, never updated: src/models/decoding.py
        scoring = {
            "bleu_lowercase": bleu_lowercase,
            "scored_text": scored_text,
            "rouge_stemmer": rouge_stemmer,
        }
        self.val_metrics = GenerationMetrics(metrics, **scoring)
        self.test_metrics = GenerationMetrics(metrics, **scoring)
        self.test_predictions: list[dict] = []
        self.test_outputs: dict[str, float] = {}  # src.metrics.health of the last test's predictions
        self._val_outputs: list[tuple[str, str]] = []
        self.nonfinite_skipped = 0
        self.train_batches = 0  # training batches seen (the share of skipped ones: check_finite)
        self._step_tokens = 0  # target tokens of the optimizer step being accumulated (`normalize_gradients`)
        # what a batch's summed loss is divided by (`on_fit_start`)
        self.token_normalizer: float | None = None
        self.run_config: dict | None = None  # the composed Hydra config, saved inside every checkpoint
        self._tokenizer_files = None
        self._compiled: dict | None = None  # compile_model(): torch.compile'd loss passes (not submodules)

    @property
    def attention(self) -> dict[str, str | None]:
        """`requested`: the spec's attn_implementation; `encoder` / `decoder`: what each side runs, read back from
        the built model (metrics.json's `attention`)."""
        return {
            "requested": self.hparams.model.get("attn_implementation", "sdpa"),
            **attention_used(self.model),
        }

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile_model(self, **options) -> None:
        """torch.compile the teacher-forced pass of the loss (training, validation and test): encoder, projection
        and decoder stack, or a decoder-only model's forward. Not the LM head on the labelled positions (how many
        there are depends on the batch) and not generation (a cache and a new length every step).

        The compiled functions share the model's parameters and are kept outside the module's submodules, so
        checkpoints and state dicts are the same with and without compile. The first batch compiles (seconds to
        minutes); a batch of another length compiles once more, with dynamic sizes, and then no more.

        Args:
            options: keyword arguments of torch.compile (mode, backend, dynamic, ...).
        """
        self._compiled = {
            "hidden": torch.compile(self._decoder_hidden, **options),
            "forward": torch.compile(self._forward, **options),
        }

    def source_length(self, max_source: int, max_target: int) -> int:
        """The longest source this model takes: a decoder-only LM reads source and target within its positions."""
        if isinstance(self.model, EncoderDecoderModel):
            return max_source
        room = usable_positions(self.model.config) - max_target
        if room < max_source:
            log.info(
                "decoder-only: sources cut to %d tokens, so that source + %d target tokens fit the model's %d positions",
                room,
                max_target,
                room + max_target,
            )
        return min(max_source, room)

    @property
    def scoring(self) -> dict:
        """How this module scores (metrics.json's `scoring`): metrics, options, and what each metric computed."""
        scorer = self.test_metrics.scorer
        return {
            "metrics": list(scorer.names),
            "bleu_lowercase": self.hparams.bleu_lowercase,
            "scored_text": scorer.scored_text,
            "rouge_stemmer": scorer.rouge_stemmer,
            "signature": scorer.signature(),
            "provenance": scorer.provenance(),  # per metric: what, tool and version, text form, signature
        }

    @property
    def special_ids(self) -> dict[str, int]:
        g = self.model.generation_config
        return {k: getattr(g, k) for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id")}

    # ---- steps -------------------------------------------------------------------------------------------
    def loss(self, batch: dict, encoded: torch.Tensor | None = None) -> torch.Tensor:
        """Token-mean cross-entropy (NLL) of the teacher-forced decoder; label pads (-100) are ignored.
        `encoded`: the batch's encoder output (`encode`), when it has been computed already."""
        logits, labels = self.labelled_logits(batch, encoded)
        return F.cross_entropy(logits, labels)

    def labelled_logits(
        self, batch: dict, encoded: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, V) in fp32, labels (N,)) of the N labelled target positions of a batch.

        The output layer (hidden x vocabulary, the largest matrix of a small model) runs only on positions that
        have a label: the same loss and gradients as full logits with ignore_index, without the padding's share.
        """
        labels = batch["labels"]
        keep = labels != -100
        head = lm_head(self.model)
        hidden_of = partial(self._decoder_hidden, encoded=encoded)
        passes = self._compiled or {"hidden": hidden_of, "forward": self._forward}
        if head is None:  # a decoder we do not know how to split: full logits
            logits = passes["forward"](batch).logits  # (B, T, V)
            return logits[keep].float(), labels[keep]
        hidden = passes["hidden"](batch)  # (B, T, H)
        return head(hidden[keep]).float(), labels[keep]  # (N, V): labelled positions only

    def encode(self, batch: dict) -> torch.Tensor | None:
        """The encoder's last hidden states of a batch, for its loss and its generation to share (an evaluation step
        then encodes each source once, not twice); None where they cannot share it (a decoder-only model, a decoder
        without a separable head, compiled passes)."""
        if self._compiled or lm_head(self.model) is None:
            return None
        return self.model.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=True
        ).last_hidden_state

    def _forward(self, batch: dict):
        return self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],  # labels shifted right, never the labels themselves
            decoder_attention_mask=batch["decoder_attention_mask"],
            use_cache=False,
        )

    def _decoder_hidden(self, batch: dict, encoded: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's last hidden states, computed as EncoderDecoderModel.forward does, without its LM head."""
        m = self.model
        if encoded is None:
            encoded = m.encoder(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=True
            ).last_hidden_state
        if hasattr(m, "enc_to_dec_proj") and (
            m.encoder.config.hidden_size != m.decoder.config.hidden_size
            and getattr(m.decoder.config, "cross_attention_hidden_size", None) is None
        ):
            encoded = m.enc_to_dec_proj(encoded)
        return m.decoder.base_model(
            input_ids=batch["decoder_input_ids"],
            attention_mask=batch["decoder_attention_mask"],
            encoder_hidden_states=encoded,
            encoder_attention_mask=batch["attention_mask"],
            use_cache=False,
            return_dict=True,
        ).last_hidden_state

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The summed (label-smoothed) loss of the batch's target tokens; `normalize_gradients` divides the step's
        gradients by the target tokens of the whole optimizer step, over gradient accumulation and processes, so
        that accumulating k batches of B examples gives the gradient of one batch of kB (as fairseq does), whatever
        their target lengths. The logged train/loss is the batch's unsmoothed per-token NLL."""
        self.train_batches += 1
        logits, labels = self.labelled_logits(batch)
        eps = self.hparams.get("label_smoothing", 0.0)
        summed = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=eps)
        tokens = labels.numel()
        loss = summed.detach() / max(tokens, 1) if not eps else F.cross_entropy(logits.detach(), labels)
        if self.token_normalizer is None:
            # a Trainer without the project's DataModule: its first batch's label slots, on every process
            self.token_normalizer = self._agreed(float(batch["labels"].numel()))
        if not torch.isfinite(summed):
            if self.hparams.skip_nonfinite:
                self.nonfinite_skipped += 1
                log.warning(
                    "non-finite loss at step %d: batch skipped (%d so far)",
                    self.global_step,
                    self.nonfinite_skipped,
                )
                return None  # Lightning skips backward and the optimizer step
            raise NonFiniteLoss(
                f"the training loss is {loss.item()} at step {self.global_step}; the run stopped and keeps its last "
                "good checkpoint. Fix: lower optimizer.lr or raise optimizer.warmup_steps (keep "
                "trainer.gradient_clip_val), or skip such batches with skip_nonfinite=true."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        if self._logging_step():
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        self._step_tokens += tokens
        return summed / self.token_normalizer

    def on_fit_start(self) -> None:
        capacity = getattr(getattr(self.trainer, "datamodule", None), "target_token_capacity", None)
        self.token_normalizer = float(capacity()) if callable(capacity) else None

    def _agreed(self, value: float) -> float:
        """`value`, the same on every process (their largest)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        agreed = torch.tensor(value, device=self.device)
        torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MAX)
        return float(agreed.item())

    def _logging_step(self) -> bool:
        return self._trainer is not None and self.global_step % self.trainer.log_every_n_steps == 0

    def normalize_gradients(self) -> None:
        """Make the accumulated gradients those of the step's summed loss over its target tokens, all processes'.

        Each batch's loss was its summed loss / `token_normalizer`, which Lightning divided by
        accumulate_grad_batches and DDP averaged over the processes: multiplying by accumulation x world size x
        token_normalizer / (the step's target tokens, summed over the processes) leaves sum / tokens."""
        if self._trainer is None:
            return
        tokens = torch.tensor(float(self._step_tokens), device=self.device)
        world = self.trainer.world_size
        if world > 1:
            torch.distributed.all_reduce(tokens)
        self._step_tokens = 0
        scale = self.trainer.accumulate_grad_batches * world * self.token_normalizer / max(tokens.item(), 1.0)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.normalize_gradients()  # before the norm is logged and the gradients clipped (the precision plugin)
        # the gradient norm before clipping; only on logging steps, as it costs a device sync
        if self._logging_step():
            norms = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
            if norms:
                self.log("train/grad_norm", torch.stack(norms).norm(), on_step=True, on_epoch=False)

    @torch.no_grad()
    def generate(self, batch: dict, encoded: torch.Tensor | None = None) -> list[str]:
        """The batch's predictions as texts; `encoded`: its encoder output (`encode`), when computed already."""
        gnmt = self.decoding.gnmt and self.decoding.beam_search(self.model.generation_config)
        try:
            with gnmt_applied(gnmt):
                out = self._generate(batch, encoded)
        except torch.OutOfMemoryError:
            size, beams = batch["input_ids"].size(0), self.decoding.num_beams or 1
            raise UserError(
                f"out of memory while generating for a batch of {size} examples with {beams} beams. "
                f"Fix: lower data.eval_batch_size (now {size}), or data.decoding.num_beams."
            ) from None
        return decode(self.decoder_tokenizer, out, self.special_ids)

    def _generate(self, batch: dict, encoded: torch.Tensor | None = None) -> torch.Tensor:
        settings = self.decoding.generate_kwargs(self.model.generation_config)
        # given the encoder's output, generate skips its own encoder pass (a new output: generate expands it in place)
        if encoded is not None:
            source = {"encoder_outputs": BaseModelOutput(last_hidden_state=encoded)}
        else:
            source = {"input_ids": batch["input_ids"]}
        return self.model.generate(**source, attention_mask=batch["attention_mask"], **settings)

    def validation_step(self, batch: dict, batch_idx: int) -> dict | None:
        limit = self.hparams.gen_val_batches
        decodes = limit is None or batch_idx < limit
        encoded = self.encode(batch) if decodes else None
        self.log("val/loss", self.loss(batch, encoded), batch_size=batch["input_ids"].size(0), sync_dist=True)
        if decodes:
            predictions = self.generate(batch, encoded)
            self.val_metrics.update(predictions, batch["target"], batch["source"])
            self._val_outputs += zip(predictions, batch["target"], strict=True)
            return {"predictions": predictions}  # for callbacks (ValidationExamples)
        return None

    def on_validation_epoch_start(self) -> None:
        self._val_outputs: list[tuple[str, str]] = []

    def on_validation_epoch_end(self) -> None:
        if self.val_metrics.update_count:
            self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()}, prog_bar=True)
            self.val_metrics.reset()
        if self._val_outputs:
            self.check_outputs([p for p, _ in self._val_outputs], [r for _, r in self._val_outputs], "val")

    def check_outputs(self, predictions: list[str], references: list[str], split: str) -> dict[str, float]:
        """Log how varied the outputs are (`src.metrics.health`); warn once a validation when they collapsed."""
        health = output_health(predictions, references)
        if self._trainer is not None and split == "val":
            self.log_dict({f"val/outputs/{k}": v for k, v in health.items()})
        reason = collapse(health, len(predictions))
        if reason:
            step = self.global_step if self._trainer is not None else 0
            log.warning(
                "%s predictions collapsed at step %d: %s (e.g. %r). Check the decoder's special tokens, "
                "optimizer.lr and the decoding settings.",
                split,
                step,
                reason,
                Counter(predictions).most_common(1)[0][0][:80],
            )
        return health

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        encoded = self.encode(batch)  # once, for the loss and the generation
        self.log(
            "test/loss", self.loss(batch, encoded), batch_size=batch["input_ids"].size(0), sync_dist=True
        )
        predictions = self.generate(batch, encoded)
        self.test_metrics.update(predictions, batch["target"], batch["source"])
        scored = self.test_metrics.scorer.scored
        for i, src, ref, pred in zip(
            batch["index"].tolist(), batch["source"], batch["target"], predictions, strict=True
        ):
            self.test_predictions.append(
                {
                    "index": i,
                    "source": src,
                    "reference": ref,
                    "prediction": pred,  # as the decoder wrote it; the metrics saw the scored_* strings
                    "scored_prediction": scored(pred),
                    "scored_reference": scored(ref),
                }
            )

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()
        if (
            self.trainer.world_size > 1
        ):  # each process decoded a shard: gather them, drop sampler padding repeats
            shards = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shards, self.test_predictions)
            self.test_predictions = list({r["index"]: r for shard in shards for r in shard}.values())
        self.test_predictions.sort(key=lambda r: r["index"])  # evaluation ran longest-first
        self.test_outputs = self.check_outputs(
            [r["prediction"] for r in self.test_predictions],
            [r["reference"] for r in self.test_predictions],
            "test",
        )

    # ---- optimisation ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = dict(self.hparams.optimizer)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        optimizer, scheduler = build_optimizer(
            self.model, total_steps=total, hidden_size=self.model.decoder.config.hidden_size, **cfg
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints -------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint's arguments gain the architecture and tokenizers (`built`), and it keeps the run config."""
        if self._tokenizer_files is None:
            self._tokenizer_files = {
                "encoder": tokenizer_files(self.encoder_tokenizer),
                "decoder": tokenizer_files(self.decoder_tokenizer),
            }
        checkpoint["hyper_parameters"] = {
            **checkpoint.get("hyper_parameters", {}),
            "built": {"arch": self.arch, "tokenizers": self._tokenizer_files},
        }
        checkpoint["run_config"] = self.run_config
        checkpoint["nonfinite"] = {"skipped": self.nonfinite_skipped, "batches": self.train_batches}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is None:  # a resumed run keeps the config it was started with this time
            self.run_config = checkpoint.get("run_config")
        counts = checkpoint.get("nonfinite") or {}  # a resumed run's share of skipped batches counts them all
        self.nonfinite_skipped = int(counts.get("skipped", 0))
        self.train_batches = int(counts.get("batches", 0))

    def check_finite(self, max_skipped_share: float) -> None:
        """After training: refuse (NonFiniteLoss) weights that are not finite (an update after the last loss
        checked, e.g. the last step's, can make them so) and, with skip_nonfinite, a run that skipped more than
        `max_skipped_share` of its training batches; such a run is not completed."""
        step = self.trainer.global_step if self._trainer is not None else 0
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLoss(
                f"the model's weights are not finite after step {step} ({len(bad)} tensors, e.g. {bad[0]}): an "
                "update diverged, and the run is not completed. Fix: lower optimizer.lr or raise "
                "optimizer.warmup_steps (keep trainer.gradient_clip_val)."
            )
        share = self.nonfinite_skipped / max(self.train_batches, 1)
        if self.nonfinite_skipped and share > max_skipped_share:
            raise NonFiniteLoss(
                f"{self.nonfinite_skipped} of {self.train_batches} training batches had a non-finite loss and were "
                f"skipped ({share:.0%}, more than skip_nonfinite_max_share={max_skipped_share}): the run is not "
                "completed. Fix: lower optimizer.lr or raise optimizer.warmup_steps, or allow more with "
                "skip_nonfinite_max_share=..."
            )
