"""One key of a config group, written once beside its field: its default, what values it takes, and the fix a
refusal names. A schema's fields carry their rule (`key(...)`); `Checked.__post_init__` applies every rule when the
composed config becomes objects, and the one-line composition errors (src.config.hydra_errors) word a value of the
wrong type with the same text.

    batch_size: Optional[int] = key(256, at_least(1, "examples per device per forward pass"), fix="{key}=16")
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from src.system.errors import UserError


def shown(value) -> str:
    """A value as one writes it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if not isinstance(value, str) or value else "''"


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def refusal(key: str, value, valid: str, fix: str, why: str = "") -> str:
    """The one wording of a refused value: the key, the value given (and why, where a parser said), what the key
    is, and the fix."""
    because = f" ({why.rstrip('.')})" if why else ""
    return f"{key}={shown(value)} is not valid{because}: {key} is {valid}. Fix: {fix}."


def refuse(key: str, value, valid: str, fix: str) -> None:
    raise UserError(refusal(key, value, valid, fix))


def closest(name: str, known) -> str | None:
    """The known key closest to a misspelt one, or None (the cutoff every "did you mean" uses)."""
    match = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return match[0] if match else None


def placeholder(value) -> bool:
    """An interpolation (`${data.max_steps}`) or a missing value (`???`) not yet resolved."""
    return isinstance(value, str) and (value == "???" or "${" in value)


@dataclass(frozen=True)
class Rule:
    """What a key's value may be: `test` passes a set value; null passes where `nullable`. `valid` and `fix` are the
    refusal's words; `{key}` in them stands for the key's full name."""

    valid: str
    test: Callable[[Any], bool]
    nullable: bool = False
    fix: str = ""

    def check(self, name: str, value) -> None:
        if value is None and self.nullable:
            return
        if value is None or not self.test(value):
            self.refuse(name, value)

    def refuse(self, name: str, value) -> None:
        refuse(name, value, *self.words(name))

    def words(self, name: str) -> tuple[str, str]:
        """What the key `name` is, and its fix, as a refusal says them."""
        valid = self.valid + (" or null" if self.nullable and "or null" not in self.valid else "")
        return valid.format(key=name), self.fix.format(key=name)


def at_least(low: int, what: str, *, nullable: bool = False, fix: str = "") -> Rule:
    """An integer >= low (`what` says what it counts)."""
    bound = "a positive integer" if low == 1 else f"an integer >= {low}"
    return Rule(f"{bound} ({what})", lambda v: is_int(v) and v >= low, nullable, fix)


def positive_number(what: str, *, fix: str = "") -> Rule:
    return Rule(f"a positive number ({what})", lambda v: is_number(v) and v > 0, False, fix)


def share(valid: str, *, low_open: bool = True, nullable: bool = False, fix: str = "") -> Rule:
    """A number in (0, 1] (low_open) or [0, 1]."""
    return Rule(valid, lambda v: is_number(v) and (v > 0 if low_open else v >= 0) and v <= 1, nullable, fix)


def one_of(choices, valid: str | None = None, *, nullable: bool = False, fix: str = "") -> Rule:
    names = ", ".join(str(c) for c in choices)
    text = valid or (
        f"{names.rsplit(', ', 1)[0]} or {names.rsplit(', ', 1)[1]}" if len(choices) > 1 else names
    )
    return Rule(text, lambda v: v in choices and type(v) in {type(c) for c in choices}, nullable, fix)


def key(default=MISSING, rule: Rule | None = None, *, factory=MISSING):
    """A dataclass field with its rule (None: its type says everything)."""
    metadata = {"rule": rule} if rule is not None else {}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class Checked:
    """A schema whose fields' rules run when an object of it is made (OmegaConf.to_object, or by hand), then
    `check()`, the rules across the group's own keys. `PREFIX` is the group's place in the config ("data")."""

    PREFIX: ClassVar[str] = ""

    def __post_init__(self):
        if any(placeholder(getattr(self, f.name)) for f in fields(self)):
            return  # a schema's own defaults, as OmegaConf makes them: checked once they are resolved
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                rule.check(self.key(f.name), getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Rules across this group's own keys (none by default)."""

    def as_dict(self) -> dict:
        """Plain values, nested groups as dicts (what a checkpoint, W&B's config and `made_with` record)."""
        return asdict(self)

    @classmethod
    def key(cls, name: str) -> str:
        return f"{cls.PREFIX}.{name}" if cls.PREFIX else name


def rules(schema, prefix: str = "") -> dict[str, Rule]:
    """Every rule of a schema and of the schemas of its fields, by the key's full name ("data.batch_size")."""
    found = {}
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        name = f"{prefix}{f.name}"
        if "rule" in f.metadata:
            found[name] = f.metadata["rule"]
        inner = hints.get(f.name)
        inner = next((a for a in typing.get_args(inner) if a is not type(None)), inner)
        if isinstance(inner, type) and hasattr(inner, "__dataclass_fields__"):
            found.update(rules(inner, f"{name}."))
    return found
