"""The keys the `trainer=` group may hold: lightning.Trainer's arguments, less those the project sets itself, plus
the project's own (read by the config checks, the assembly of a Trainer, and the one-line Hydra errors)."""

from __future__ import annotations

import functools
import inspect

#: lightning.Trainer arguments the project sets itself (src.run.assemble.make_trainer): a value under trainer.*
#: would be replaced without a word, so it is refused with the key that does set it
SET_BY_THE_PROJECT = {
    "logger": "logger=<option> (conf/logger: wandb, tensorboard, csv, none)",
    "callbacks": "the callbacks= group (conf/callbacks/default.yaml)",
    "enable_progress_bar": "progress=rich|plain|none",
    "plugins": "trainer.precision (mixed precision is given to the Trainer as a plugin)",
}

#: trainer.* keys that are the project's, not lightning.Trainer's: src.run.assemble takes them out before the Trainer
#: is made (compile: torch.compile of the model's loss pass, `Seq2SeqModule.compile_model`)
PROJECT_TRAINER_KEYS = ("compile",)


@functools.cache
def trainer_arguments() -> frozenset[str]:
    """The keys trainer.* may hold: lightning.Trainer's arguments, Hydra's `_target_` and the project's own
    (`PROJECT_TRAINER_KEYS`)."""
    import lightning as L

    own = {"_target_", *PROJECT_TRAINER_KEYS}
    return frozenset(inspect.signature(L.Trainer.__init__).parameters) - {"self"} | own
