"""Hydra's own failures on the command line as the project's: one `error: ... Fix: ...` line and exit 2.

Hydra composes the config before the task function runs, so a mistyped key (`trainer.max_step=3`), a missing
option (`data=nosuch`) or an override it cannot parse fails where no code of ours runs: Hydra prints its message
(several lines, and "To append to your config use +trainer.max_step=3", which adds a key the code never reads) and
exits 1. `hydra_entry` wraps a `@hydra.main` function so that those failures name the closest real key or the
options instead, and end with exit 2, like the project's other bad-input errors:

    @hydra_entry
    @hydra.main(version_base="1.3", config_path="../conf", config_name="train")
    def main(cfg): ...

How: every failure of `hydra.main` goes through Hydra's `run_and_report` (hydra/_internal/utils.py), which prints
it and exits 1. While the wrapped function runs, that function is given a step first that turns the failures of
composing the config into our line; everything else (the task's own exceptions, which Hydra reports as before)
goes on to Hydra untouched, and so does everything with HYDRA_FULL_ERROR=1 or WARMSTART_DEBUG=1 (Hydra's own
report, or with HYDRA_FULL_ERROR=1 the exception itself). Where a Hydra version lacks `run_and_report`, the
wrapper changes nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import os
import re
import sys

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from src.config.schema import schema_rules
from src.config.trainer import SET_BY_THE_PROJECT, set_by_the_project
from src.system.errors import UserError
from src.system.keys import closest, refusal

#: the modules that call Hydra's run_and_report by a name of their own
_REPORTERS = ("hydra._internal.utils", "hydra._internal.hydra")
#: set to 1, Hydra reports as it always does (as src.system.errors keeps a UserError's traceback then)
_DEBUG_VARIABLES = ("HYDRA_FULL_ERROR", "WARMSTART_DEBUG")
#: spellings an earlier version took, and what says the same now (an old command line names its new form)
RENAMED = {
    "experiment=paper": "paper=rothe2020",
    "data.generation": "data.decoding",  # src.eval's own: decoding.*
}


def hydra_entry(main):
    """A `@hydra.main` function whose composition failures end as one `error:` line and exit 2."""

    @functools.wraps(main)
    def entry(*args, **kwargs):
        with reported_composition_errors():
            return main(*args, **kwargs)

    return entry


@contextlib.contextmanager
def reported_composition_errors(exit_code: int = 2):
    """While inside: a config that does not compose is one `error:` line on stderr and SystemExit(exit_code)."""
    modules = []
    for name in _REPORTERS:
        with contextlib.suppress(ImportError):  # another Hydra: what it has
            modules.append(importlib.import_module(name))
    originals = [getattr(m, "run_and_report", None) for m in modules]
    for module, original in zip(modules, originals, strict=True):
        if original is not None:
            module.run_and_report = _reporting(original, exit_code)
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            if original is not None:
                module.run_and_report = original


def _reporting(original, exit_code: int):
    def run_and_report(func):
        def translated():
            try:
                return func()
            except Exception as ex:
                line = None if _leave_to_hydra(ex) else describe(ex)
                if line is None:
                    raise
                print(f"error: {line}", file=sys.stderr, flush=True)
                raise SystemExit(exit_code) from None

        return original(translated)

    run_and_report.__wrapped__ = original
    return run_and_report


def _leave_to_hydra(ex: BaseException) -> bool:
    """The task's own exceptions (raised under Hydra's run_job), and everything when debugging: HYDRA_FULL_ERROR=1
    or WARMSTART_DEBUG=1 (as src.system.errors). (Not a tracer, as Hydra's debugger test: coverage sets one too.)"""
    if any(os.environ.get(name, "").strip() == "1" for name in _DEBUG_VARIABLES):
        return True
    frames, tb = [], ex.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    job = next(
        (
            i
            for i, f in enumerate(frames)
            if f.f_code.co_name == "run_job" and f.f_globals.get("__name__") == "hydra.core.utils"
        ),
        None,
    )
    if job is None:
        return False
    in_task = any(str(f.f_globals.get("__name__", "")).startswith(("src.", "__main__")) for f in frames[job:])
    # an OSError of Hydra's own, before the task runs: it could not make the run directory, the user's to fix
    return in_task or not isinstance(ex, OSError)


def _first_line(text) -> str:
    return str(text).strip().splitlines()[0].strip() if str(text).strip() else ""


def describe(ex: BaseException) -> str | None:
    """One line for a failure to compose the config (a key, an option, an override), or None if it is none."""
    if isinstance(ex, MissingConfigException):
        return _missing_option(ex)
    if isinstance(ex, UserError):  # the project's sweeper or launcher refusing its settings, before any job
        return str(ex)
    if isinstance(ex, OSError):
        return (
            f"cannot write the run directory {ex.filename or ''} ({ex.strerror or ex}). Fix: hydra.run.dir=<a "
            "directory you can write> (hydra.sweep.dir=... for a -m sweep), or free the disk."
        )
    if isinstance(ex, AssertionError) and "Unexpected type: None" in str(ex):  # a key under a null node
        return (
            "an override sets a key under a part of the config that is null here (data.* in src.eval without "
            "data=<task>, say). Fix: pick the group first (data=<option>), or use src.eval's own keys (decoding.*)."
        )
    if isinstance(ex, OverrideParseException):
        url = re.search(r"https://\S+", str(ex.message))
        return (
            f"cannot read the override {ex.override!r}: {_first_line(ex.message)}. Fix: write it as key=value "
            "(quote a value with spaces or brackets: key='[a, b]')"
            + (f"; the grammar: {url.group(0)}." if url else ".")
        )
    cause = ex.__cause__
    message = str(ex)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and message.startswith("Could not override"):
        return _unknown_key(message, cause)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        return _wrong_type(message, cause)
    appended = re.match(r"Could not append to config\. An item is already at '([^']+)'", message)
    if appended:
        name = appended.group(1)
        return (
            f"+{name}: {name} is a key already (--cfg job shows its value). Fix: {name}=VALUE, without the +."
        )
    if isinstance(ex, HydraException | OmegaConfBaseException):
        line = _first_line(message)
        if message.startswith("Error merging override "):
            line = line.removeprefix("Error merging override ")
        if isinstance(cause, OmegaConfBaseException):
            line = f"{line.rstrip('.')}: {_first_line(cause)}"
            key = getattr(cause, "full_key", None)
            fix = f"give {key} a value of its type" if key else "correct the override"
        else:
            fix = "correct the override (--cfg job shows the composed config, --info defaults the defaults list)"
        return f"{line.rstrip('.')}. Fix: {fix}."
    return None


def _wrong_type(message: str, cause) -> str:
    """`data.batch_size=abc`: a value its type cannot hold, said with the key's rule (src.system.keys) where it has
    one, as a value out of its range is."""
    full_key = str(cause.full_key)
    given = re.search(r"override (\S+?)=(\S*)", message)
    value = given.group(2) if given and given.group(1).lstrip("+") == full_key else None
    if value is None:
        value = re.search(r"Value '([^']*)'", str(cause))
        value = value.group(1) if value else "?"
    why = _first_line(cause)
    rule = schema_rules().get(full_key)
    if rule is not None:
        return refusal(full_key, value, *rule.words(full_key), why=why)
    return f"{full_key}={value} is not valid: {why.rstrip('.')}. Fix: give {full_key} a value of its type."


def _missing_option(ex) -> str:
    """`data=nosuch`: the group's options, the closest first."""
    path = str(ex.missing_cfg_file or "")
    options = list(ex.options or [])
    if "/" not in path or not options:
        return f"{_first_line(ex)} Fix: check the config name and the search path (--info searchpath)."
    group, option = path.rsplit("/", 1)
    if f"{group}={option}" in RENAMED:
        return f"{group}={option} is now {RENAMED[f'{group}={option}']}. Fix: {RENAMED[f'{group}={option}']}."
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.5)
    guess = f" Did you mean {group}={close[0]}?" if close else ""
    return (
        f"Could not find '{path}': {group}={option} is not an option of {group}.{guess} "
        f"Fix: {group}=<one of {', '.join(options)}>."
    )


def _unknown_key(message: str, cause) -> str:
    """`trainer.max_step=3`: not a key; the closest key of that node (the trainer group holds every Trainer
    argument, less those the project sets itself)."""
    full_key = str(getattr(cause, "full_key", "") or cause.key)
    parent, _, key = full_key.rpartition(".")
    override = message.rsplit("To append to your config use +", 1)[-1].strip() if "+" in message else ""
    value = override.split("=", 1)[1] if "=" in override else None
    if full_key in RENAMED:
        new = RENAMED[full_key]
        fix = override.replace(full_key, new, 1) if override.startswith(full_key) else new
        return f"{full_key} is now {new}. Fix: {fix}."
    node = getattr(cause, "parent_node", None)
    known = [str(k) for k in node] if node is not None else []
    where = f"a key of {parent}" if parent else "a top-level key"
    if parent == "trainer" and key in SET_BY_THE_PROJECT:
        return set_by_the_project(key)
    known = [k for k in known if k != "hydra" or parent]
    close = closest(key, known)
    if close:
        name = f"{parent}.{close}" if parent else close
        # the override as typed, the misspelt part mended (dta.batch_size=8 -> data.batch_size=8)
        if override.startswith(full_key):
            fix = name + override[len(full_key) :]
        else:
            fix = f"{name}={value}" if value is not None else name
        return (
            f"{full_key} is not {where}. Did you mean {name}? Fix: {fix} "
            f"(+{override or full_key} would add a key the code never reads)."
        )
    keys = f" (its keys: {', '.join(known)})" if len(known) <= 30 else ""
    return (
        f"{full_key} is not {where}{keys}. Fix: a key it has; --cfg job shows the composed config "
        f"(+{override or full_key} would add a key the code never reads)."
    )
