"""How a model decodes: one typed, immutable set of `generate` settings, read by every command.

The fields are the one list of decoding keys, with their rules: the training config's `data.decoding`
(`TaskDecoding`) and `src.eval`'s `decoding` (`DecodingOverride`) are schemas made from them (src.config.schema),
`src.predict`'s flags are made from them, and an export writes them to generation_config.json. A changed decoding is a new object (`Decoding.override`).

The length penalty has two forms (`length_penalty_form`): transformers' (a finished beam's log-probability
divided by len^alpha) and GNMT's, which tensor2tensor and the paper use (divided by ((5 + len) / 6)^alpha; len counts
the generated tokens, EOS included, as both do). transformers' beam search computes its penalty in two places as
`length ** length_penalty`, with `length` a Python int; the GNMT form is an alpha (`GNMTLengthPenalty`, a float)
whose reflected power is GNMT's. Nothing of transformers' search is copied or patched: it runs as it is, cache
included. `GNMTLengthPenalty.applied` counts the penalties computed, so that a transformers whose search stops
computing `int ** length_penalty` is detected (`check_applied`) instead of silently decoding with len^alpha.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, make_dataclass, replace
from typing import ClassVar, Optional, get_type_hints

import transformers
from omegaconf import OmegaConf

from src.system.errors import UserError
from src.system.keys import Checked, at_least, key, one_of

BEAMS = at_least(1, "beams of beam search; 1: greedy; null: generate's default", nullable=True, fix="{key}=4")
NEW_TOKENS = at_least(
    1, "the longest output, in tokens; null: generate's default", nullable=True, fix="{key}=128"
)
LENGTH_PENALTY_FORMS = ("transformers", "gnmt")
LENGTH_PENALTY_FORM = one_of(
    LENGTH_PENALTY_FORMS,
    "transformers (log-probability / len^alpha) or gnmt (/ ((5 + len) / 6)^alpha, the paper's)",
    nullable=True,
    fix="{key}=gnmt",
)


@dataclass(frozen=True)
class Decoding(Checked):
    """`generate` keyword arguments; None = generate's (the model's generation_config) default. Made, its fields'
    rules are checked (src.system.keys)."""

    PREFIX: ClassVar[str] = "data.decoding"

    # (typing.Optional throughout: OmegaConf's structured configs read it)
    num_beams: Optional[int] = key(None, BEAMS)  # noqa: UP045
    max_new_tokens: Optional[int] = key(None, NEW_TOKENS)  # noqa: UP045  the maximum length, after the prompt
    min_new_tokens: Optional[int] = None  # noqa: UP045
    max_length: Optional[int] = None  # noqa: UP045  the blog recipe's length, counting the decoder start token
    min_length: Optional[int] = None  # noqa: UP045
    length_penalty: Optional[float] = None  # noqa: UP045
    no_repeat_ngram_size: Optional[int] = None  # noqa: UP045  n: no n-gram repeated within an output
    early_stopping: Optional[bool] = None  # noqa: UP045
    # how length_penalty (alpha) normalises a finished beam's log-probability: "transformers" (len^alpha) or "gnmt"
    # (((5 + len) / 6)^alpha, tensor2tensor's and the paper's); null: transformers'
    length_penalty_form: Optional[str] = key(None, LENGTH_PENALTY_FORM)  # noqa: UP045

    @property
    def gnmt(self) -> bool:
        """Whether beam search normalises by GNMT's ((5 + len) / 6)^alpha."""
        return self.length_penalty_form == "gnmt"

    @classmethod
    def of(cls, settings=None) -> Decoding:
        """From a mapping (a config node, a run's saved dict, a checkpoint's hyperparameters); unknown keys refused."""
        if isinstance(settings, Decoding):
            return settings
        if is_dataclass(settings):  # the config's schema of it (TaskDecoding, DecodingOverride)
            settings = asdict(settings)
        elif settings is not None and not isinstance(settings, dict):
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

        `length_penalty_form` is no argument of generate: the GNMT form turns the length penalty (this one's, else
        the config's, else transformers' default 1.0) into a `GNMTLengthPenalty`.
        """
        given = self.kwargs()
        given.pop("length_penalty_form", None)
        beams = self._beams(generation_config)
        if beams == 1:
            for key in BEAM_ONLY:
                given.pop(key, None)
        elif self.gnmt:
            alpha = given.get("length_penalty", getattr(generation_config, "length_penalty", None))
            given["length_penalty"] = GNMTLengthPenalty(1.0 if alpha is None else alpha)
        return given

    def _beams(self, generation_config=None) -> int | None:
        """The beams `generate` will use: num_beams here, else the config's (None: unknown, no config given)."""
        if self.num_beams is not None or generation_config is None:
            return self.num_beams
        return getattr(generation_config, "num_beams", None) or 1

    def beam_search(self, generation_config=None) -> bool:
        """Whether `generate` searches with more than one beam (num_beams here, else the config's)."""
        return (self._beams(generation_config) or 1) > 1

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.kwargs().items())) or "generate's defaults"


KEYS = tuple(f.name for f in fields(Decoding))
#: settings only beam search reads (transformers 5 warns when they are set beside num_beams=1)
BEAM_ONLY = ("early_stopping", "length_penalty", "length_penalty_form")


class GNMTLengthPenalty(float):
    """A length penalty alpha that transformers' beam search applies in GNMT's form.

    transformers 5 divides a beam's log-probability by `length ** length_penalty` (`_update_finished_beams` and
    `_check_early_stop_heuristic` of `GenerationMixin`), `length` an int: int's power gives way to this float's
    reflected power, which returns ((5 + length) / 6) ** alpha. Everywhere else it is the float alpha (its sign,
    its JSON). Each penalty computed counts in `GNMTLengthPenalty.applied`.
    """

    applied = 0  # penalties computed, by every instance (generate copies its settings)

    def __rpow__(self, length):
        GNMTLengthPenalty.applied += 1
        return gnmt_penalty(float(length), float(self))

    def __repr__(self) -> str:
        return f"GNMTLengthPenalty({float(self)!r})"


def gnmt_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016; tensor2tensor's beam search): ((5 + length) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@contextlib.contextmanager
def gnmt_applied(expected: bool):
    """Around a `generate` call: when `expected` (a beam search with the GNMT form), `check_applied` after it."""
    before = GNMTLengthPenalty.applied
    yield
    if expected:
        check_applied(before)


def check_applied(before: int) -> None:
    """Raise if no GNMT penalty was computed since `GNMTLengthPenalty.applied` was `before` (read before a beam
    search with the GNMT form): the installed transformers no longer computes `length ** length_penalty`, so its
    outputs would be transformers' len^alpha under the GNMT name."""
    if GNMTLengthPenalty.applied == before:
        raise UserError(
            f"transformers {transformers.__version__}'s beam search did not apply the GNMT length penalty "
            "(it no longer computes `length ** length_penalty`), so the outputs would be ranked by len^alpha. "
            "Fix: install the transformers version pyproject.toml names, or set "
            "data.decoding.length_penalty_form=transformers."
        )


def schema(name: str, prefix: str, **defaults) -> type:
    """Decoding's fields (their rules too) in a dataclass OmegaConf may write to while it composes (Decoding is
    frozen), for the config at `prefix`; `defaults` replace the fields' None."""
    types = get_type_hints(Decoding)
    return make_dataclass(
        name,
        [
            (f.name, types[f.name], field(default=defaults.get(f.name), metadata=f.metadata))
            for f in fields(Decoding)
        ],
        bases=(Checked,),
        namespace={"PREFIX": prefix, "__module__": __name__},
    )


#: a task's decoding (data.decoding), beam 4 unless its data= file says otherwise
TaskDecoding = schema(
    "TaskDecoding", "data.decoding", num_beams=4, max_new_tokens=128, length_penalty=1.0, early_stopping=True
)
#: src.eval's `decoding`: null keeps the run's own setting
DecodingOverride = schema("DecodingOverride", "decoding")
