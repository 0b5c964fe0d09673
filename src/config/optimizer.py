"""The `optimizer=` group: the blog's AdamW with linear decay (the defaults here) or the paper's Adam with
tensor2tensor's rsqrt schedule (conf/optimizer/adam_rsqrt.yaml holds what differs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, List, Optional  # noqa: UP035

from src.system.keys import Checked, Rule, at_least, is_number, key, one_of, positive_number, refuse

OPTIMIZERS = ("adam_rsqrt", "adamw_linear")


@dataclass
class OptimizerConfig(Checked):
    """build_optimizer's settings (src.models.optim); the schedule's length is the run's step budget."""

    PREFIX: ClassVar[str] = "optimizer"
    name: str = key("adamw_linear", one_of(OPTIMIZERS, fix="optimizer=adam_rsqrt or optimizer=adamw_linear"))
    lr: float = key(5.0e-5, positive_number("the peak learning rate", fix="{key}=5e-5"))
    warmup_steps: int = key(2000, at_least(0, "optimizer steps of linear warmup", fix="{key}=1000"))
    # the task's recipe (data.weight_decay, the blog's 0), else this optimizer's own
    weight_decay: float = key(
        "${coalesce:${data.weight_decay},0.01}",
        Rule("a number >= 0", lambda v: is_number(v) and v >= 0, fix="{key}=0.01"),
    )
    betas: List[float] = key(factory=lambda: [0.9, 0.999])  # noqa: UP006
    eps: float = 1.0e-8
    fused: Optional[bool] = None  # noqa: UP045  null: the fused kernel on CPU and CUDA, else foreach

    def check(self) -> None:
        if self.name == "adam_rsqrt" and self.warmup_steps == 0:  # the rsqrt schedule divides by the warmup
            refuse(
                "optimizer.warmup_steps",
                0,
                "a positive integer (optimizer steps of linear warmup; adam_rsqrt's schedule divides by it)",
                "optimizer.warmup_steps=1000",
            )
