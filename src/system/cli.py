"""The convention of the non-Hydra commands: argparse, `--help` that opens with the usage lines, and one error
path (a `UserError` is one `error: ...` line naming the fix, exit 2: `src.system.errors.report_user_errors`)."""

from __future__ import annotations

import argparse


def command_parser(name: str, doc: str, usage: str) -> argparse.ArgumentParser:
    """The parser of `python -m src.<name>`: `usage` (example command lines) first, then the module's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m src.{name}",
        usage=usage,
        description=doc,
        formatter_class=argparse.RawTextHelpFormatter,
    )
