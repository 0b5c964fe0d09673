"""The convention of the non-Hydra commands: argparse, `--help` that opens with the usage lines, and one error
path (a `UserError` is one `error: ...` line naming the fix, exit 2: `src.system.errors.report_user_errors`); a
command line argparse refuses (an unknown option, a value of the wrong type) is one such line too."""

from __future__ import annotations

import argparse
import sys


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose refusals read like the commands' other errors: one `error: ... Fix: ...` line, exit 2."""

    def error(self, message: str):
        print(f"error: {message}. Fix: see `{self.prog} --help` for its usage.", file=sys.stderr, flush=True)
        raise SystemExit(2)


def command_parser(name: str, doc: str, usage: str) -> argparse.ArgumentParser:
    """The parser of `python -m src.<name>`: `usage` (example command lines) first, then the module's docstring."""
    return CommandParser(
        prog=f"python -m src.{name}",
        usage=usage,
        description=doc,
        formatter_class=argparse.RawTextHelpFormatter,
    )
