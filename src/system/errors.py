"""User-facing errors: one clear message naming the problem and the fix, never a traceback wall."""

from __future__ import annotations

import contextlib
import sys


class UserError(Exception):
    """Bad input or configuration that the user can fix; its message says how."""


@contextlib.contextmanager
def report_user_errors(exit_code: int = 2):
    """Turn a UserError into one `error: ...` line on stderr and a non-zero exit."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None
