"""A tiny run's overrides: the few lines every test that trains for real gives `src.train` (or compose_train)."""

from __future__ import annotations

#: tiny_run's settings and the override each one sets
KEYS = {
    "batch": "data.batch_size",
    "eval_batch": "data.eval_batch_size",
    "new_tokens": "data.decoding.max_new_tokens",
    "beams": "data.decoding.num_beams",
    "steps": "trainer.max_steps",
    "val_every": "trainer.val_check_interval",
    "log_every": "trainer.log_every_n_steps",
    "warmup": "optimizer.warmup_steps",
    "lr": "optimizer.lr",
    "progress": "progress",
    "logger": "logger",
}


def tiny_models(tiny, side: str = "bert") -> list[str]:
    """Overrides that make encoder and decoder the session's tiny checkpoint of one family (`tiny[side]`)."""
    return [f"encoder.checkpoint={tiny[side]}", f"decoder.checkpoint={tiny[side]}"]


def synthetic_overrides(
    *, train: int, validation: int, test: int, batch: int, eval_batch: int, new_tokens: int, beams: int
) -> list[str]:
    """`src.train` overrides for a small synthetic task: split sizes, batch sizes and generation length."""
    return [
        f"data.synthetic.num_train={train}",
        f"data.synthetic.num_validation={validation}",
        f"data.synthetic.num_test={test}",
        f"data.batch_size={batch}",
        f"data.eval_batch_size={eval_batch}",
        f"data.decoding.max_new_tokens={new_tokens}",
        f"data.decoding.num_beams={beams}",
    ]


def tiny_run(
    *,
    steps: int | None = 4,
    val_every: int | None = 2,
    log_every: int | None = None,
    warmup: int | None = None,
    lr: str | None = None,
    progress: str | None = "plain",
    logger: str | None = "none",
    synthetic: bool = True,
    train: int = 32,
    validation: int = 4,
    test: int = 4,
    batch: int | None = 8,
    eval_batch: int | None = 8,
    new_tokens: int | None = 4,
    beams: int | None = 1,
) -> list[str]:
    """Overrides for a tiny run: `steps` training steps, validation every `val_every`, plain progress lines, no
    logger, on a small synthetic task (its split sizes, batch sizes, generation length and beams).

    A setting given as None is left to the config (steps=None: the test sets trainer.max_steps itself;
    logger=None: the test chooses its logger). logger="wandb" logs to W&B offline. synthetic=False: the run's data
    is another task's, so no synthetic split sizes. `lr` is written as given ("1e-3").
    """
    sizes = (
        [
            f"data.synthetic.num_train={train}",
            f"data.synthetic.num_validation={validation}",
            f"data.synthetic.num_test={test}",
        ]
        if synthetic
        else []
    )
    settings = {
        "batch": batch,
        "eval_batch": eval_batch,
        "new_tokens": new_tokens,
        "beams": beams,
        "steps": steps,
        "val_every": val_every,
        "log_every": log_every,
        "warmup": warmup,
        "lr": lr,
        "progress": progress,
        "logger": logger,
    }
    run = [f"{KEYS[name]}={value}" for name, value in settings.items() if value is not None]
    return [*sizes, *run, *(["logger.mode=offline"] if logger == "wandb" else [])]
