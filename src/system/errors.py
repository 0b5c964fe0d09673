"""User-facing errors: one clear message naming the problem and the fix, never a traceback wall.

A command wraps its work in `report_user_errors()`: a `UserError` raised inside becomes one line on stderr,
`error: <what is wrong>. Fix: <what to do>.`, and exit status 2; nothing else is caught (a bug keeps its traceback).
A message of several lines (a library's, passed on) is cut to its first line and its `Fix: ...`.

Debugging: with `WARMSTART_DEBUG=1` or `HYDRA_FULL_ERROR=1` in the environment, the UserError is raised on instead,
with its traceback (and, where it was made from another exception, that one's too):

    WARMSTART_DEBUG=1 python -m src.export outputs/runs/<run> --out DIR
    HYDRA_FULL_ERROR=1 python -m src.train ...     # Hydra's own switch; Hydra's commands then show everything
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

#: environment variables that, set to 1, keep a UserError's traceback (report_user_errors raises it on)
DEBUG_VARIABLES = ("WARMSTART_DEBUG", "HYDRA_FULL_ERROR")


class UserError(Exception):
    """Bad input or configuration that the user can fix; its message says how."""


def debugging() -> bool:
    """Whether the environment asks for tracebacks (WARMSTART_DEBUG=1 or HYDRA_FULL_ERROR=1)."""
    return any(os.environ.get(name, "").strip() == "1" for name in DEBUG_VARIABLES)


def one_line(text: str) -> str:
    """`text` on one line: its first line (a library's message passed on can run to many), and its `Fix: ...` where
    that came later."""
    text = str(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    fix = text.rfind("Fix:")
    if fix == -1 or "Fix:" in lines[0]:
        return lines[0]
    return f"{lines[0]} ... {' '.join(text[fix:].split())}"


@contextlib.contextmanager
def report_user_errors(exit_code: int = 2):
    """Turn a UserError into one `error: ...` line on stderr and exit `exit_code` (2); with WARMSTART_DEBUG=1 or
    HYDRA_FULL_ERROR=1 in the environment, raise it on with its traceback instead."""
    try:
        yield
    except UserError as err:
        if debugging():
            if (
                err.__context__ is not None
            ):  # `raise UserError(...) from None` hid the original: show it again
                err.__suppress_context__ = False
            raise
        print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None


class DiskFull(UserError):
    """A write failed for want of space (or quota) on the file system that holds it."""


def disk_full(err: BaseException) -> bool:
    """Whether `err` says a file system is full: ENOSPC / EDQUOT, or numpy's short write ("N requested and M
    written"), which carries no errno."""
    return isinstance(err, OSError) and (
        err.errno in (errno.ENOSPC, errno.EDQUOT) or "requested and" in str(err)
    )
