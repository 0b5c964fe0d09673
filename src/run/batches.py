"""How many examples a device takes per forward pass: the batch arithmetic that the config checks and the assembly
of a run share (one rule, asked by both, so each message is worded once)."""

from __future__ import annotations

from src.config.data import DataConfig
from src.system.errors import UserError


def per_device_batch_size(data: DataConfig, devices: int, accumulation: int) -> int:
    """`data.batch_size`, or the share of `data.global_batch_size` one device takes in one forward pass.

    The global batch (examples per optimizer step) is per-device batch x devices x gradient accumulation; a
    combination that does not divide it, or a batch_size that contradicts it, is refused. With `data.max_tokens`
    training batches hold as many examples as fit in the token budget and batch_size is not used for them; a
    global batch (a fixed example count) with it is refused (DataConfig.check).
    """
    batch, total = data.batch_size, data.global_batch_size
    if total is None:
        if batch is None:
            raise UserError(
                "data.batch_size and data.global_batch_size are both null. Fix: set one, e.g. data.batch_size=16."
            )
        return batch
    split = devices * accumulation
    fits = [a for a in (1, 2, 4, 8, 16, 32, 64) if total % (devices * a) == 0]
    fix = ", ".join(f"accumulate_grad_batches={a} -> batch {total // (devices * a)}" for a in fits[:5])
    if total % split:
        raise UserError(
            f"data.global_batch_size={total} does not divide into {devices} device(s) x "
            f"trainer.accumulate_grad_batches={accumulation}. Fix: devices x accumulation must divide {total}"
            + (f"; with {devices} device(s): {fix}." if fits else ".")
        )
    if batch is not None and batch * split != total:
        raise UserError(
            f"data.batch_size={batch} x {devices} device(s) x trainer.accumulate_grad_batches={accumulation} = "
            f"{batch * split} examples per step, not data.global_batch_size={total}. Fix: data.batch_size=null "
            f"(it follows from the global batch), or with {devices} device(s): {fix}."
        )
    return total // split
