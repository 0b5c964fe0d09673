"""How a model decodes: one typed, immutable set of `generate` settings, read by every command.

The fields are the one list of decoding keys: the training config's `data.generation` (conf/data_common) and
`src.eval`'s are this schema (registered with Hydra as `decoding_schema`), `src.predict`'s flags are made from it,
and an export writes it to generation_config.json. A changed decoding is a new object (`Decoding.override`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, make_dataclass, replace
from typing import Optional, get_type_hints

from src.system.errors import UserError


@dataclass(frozen=True)
class Decoding:
    """`generate` keyword arguments; None = generate's (the model's generation_config) default."""

    num_beams: Optional[int] = None  # noqa: UP045 (OmegaConf's structured configs read typing.Optional)
    max_new_tokens: Optional[int] = None  # noqa: UP045  the maximum length, in tokens after the prompt
    min_new_tokens: Optional[int] = None  # noqa: UP045
    max_length: Optional[int] = None  # noqa: UP045  the blog recipe's length, counting the decoder start token
    min_length: Optional[int] = None  # noqa: UP045
    length_penalty: Optional[float] = None  # noqa: UP045
    no_repeat_ngram_size: Optional[int] = None  # noqa: UP045  n: no n-gram repeated within an output
    early_stopping: Optional[bool] = None  # noqa: UP045

    @classmethod
    def of(cls, settings=None) -> Decoding:
        """From a mapping (a config node, a run's saved dict, a checkpoint's hyperparameters); unknown keys refused."""
        if isinstance(settings, Decoding):
            return settings
        if settings is not None and not isinstance(settings, dict):
            from omegaconf import OmegaConf

            settings = OmegaConf.to_container(settings, resolve=True)
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(KEYS))
        if unknown:
            raise UserError(f"unknown decoding setting(s) {unknown}. Fix: use {', '.join(KEYS)}.")
        return cls(**settings)

    def override(self, changes=None) -> Decoding:
        """A new Decoding: this one with the set (not None) values of `changes`."""
        given = Decoding.of(changes).kwargs()
        return replace(self, **given) if given else self

    def kwargs(self) -> dict:
        """The set values, as `generate` keyword arguments."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def generate_kwargs(self, generation_config=None) -> dict:
        """`kwargs()` as a `generate` call takes them: without the beam-search-only settings (BEAM_ONLY) when the
        decoding is greedy, where generate ignores them and warns "The following generation flags are not valid
        and may be ignored: ['early_stopping']". Greedy is num_beams=1 here, or num_beams unset and the model's
        `generation_config` (when given) decoding with one beam; unset and no config given, they are kept (the
        model's default may be beam search). The outputs are the same either way.
        """
        given = self.kwargs()
        beams = self.num_beams
        if beams is None and generation_config is not None:
            beams = getattr(generation_config, "num_beams", None) or 1
        if beams == 1:
            for key in BEAM_ONLY:
                given.pop(key, None)
        return given

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.kwargs().items())) or "generate's defaults"


KEYS = tuple(f.name for f in fields(Decoding))
#: settings only beam search reads (transformers 5 warns when they are set beside num_beams=1)
BEAM_ONLY = ("early_stopping", "length_penalty")


def register_schema() -> None:
    """Make `decoding_schema` known to Hydra: conf/ places it where a config holds decoding settings."""
    from hydra.core.config_store import ConfigStore

    types = get_type_hints(
        Decoding
    )  # the same fields, in a dataclass OmegaConf may write to while it composes
    schema = make_dataclass("DecodingSchema", [(f.name, types[f.name], None) for f in fields(Decoding)])
    ConfigStore.instance().store(name="decoding_schema", node=schema)
