"""The Trainer's precision: mixed precision that clips gradients for fused optimizers, on CPU and GPU alike."""

from __future__ import annotations

import logging
from typing import Any

from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType

from src.system.hardware import uses_cuda

log = logging.getLogger(__name__)

_MIXED = {"16": "16-mixed", "16-mixed": "16-mixed", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed"}


class FusedMixedPrecision(MixedPrecision):
    """Lightning's autocast plugin, made to clip gradients for optimizers that unscale inside their step.

    Lightning refuses to clip when the optimizer is fused (`_step_supports_amp_scaling`), because under a gradient
    scaler it would clip scaled gradients. Here the gradients are always unscaled before anything reads them:
    bf16 never scales them, and under fp16 `scaler.unscale_` runs right after backward, before
    `on_before_optimizer_step` (the logged gradient norm) and clipping. The fused step is then told the gradients
    are unscaled (GradScaler passes it no `grad_scale`) and still skips the update when they hold inf/NaN.
    """

    def optimizer_step(self, optimizer, model, closure, **kwargs: Any) -> Any:
        if self.scaler is None or not _optimizer_handles_unscaling(optimizer):
            return super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        closure_result = closure()
        skipped = closure_result is None and model.automatic_optimization  # training_step returned None
        if not skipped:
            self.scaler.unscale_(optimizer)
        self._after_closure(model, optimizer)  # on_before_optimizer_step hooks, then clipping
        if skipped:
            return closure_result
        step_output = self.scaler.step(optimizer, **kwargs)  # skipped if the gradients are not finite
        self.scaler.update()
        return step_output

    def clip_gradients(
        self,
        optimizer,
        clip_val: int | float = 0.0,
        gradient_clip_algorithm: GradClipAlgorithmType = GradClipAlgorithmType.NORM,
    ) -> None:
        # unscaled gradients only reach here (see the class docstring), so the plain clipping is right for all
        Precision.clip_gradients(self, optimizer, clip_val, gradient_clip_algorithm)


def precision_args(precision: str | int, accelerator: str = "auto") -> dict:
    """Trainer keyword arguments for a resolved precision (`resolve_precision`): `precision=`, or the plugin.

    Mixed precision goes through `FusedMixedPrecision`, so the fused optimizer and gradient clipping work together.
    fp16 autocast is for GPUs: on a CPU, as in Lightning, `16-mixed` becomes `bf16-mixed`.
    """
    mixed = _MIXED.get(str(precision))
    if mixed is None:
        return {"precision": precision}
    device = "cuda" if uses_cuda(accelerator) else "cpu"
    if mixed == "16-mixed" and device == "cpu":
        log.warning("precision=16-mixed is for GPUs; on the CPU bf16-mixed is used instead")
        mixed = "bf16-mixed"
    return {"plugins": [FusedMixedPrecision(mixed, device)]}
