"""Files a command writes, replaced atomically (a reader sees the old file or the new one), and Markdown tables."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from src.system.errors import DiskFull, disk_full


def file_mode(directory: bool = False) -> int:
    """The permissions a new file (or directory) gets under the process's umask, as open() and mkdir() give them.

    tempfile's mkstemp and mkdtemp create 0600 / 0700 whatever the umask: what is written through them is
    chmod-ed to this, so a team's shared results and cache stay readable to the others."""
    return (0o777 if directory else 0o666) & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask sets it: set it back at once
    os.umask(mask)
    return mask


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (where the file system supports it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def existing_directory(path: str | Path) -> Path | None:
    """`path` if it is there, else its nearest parent that is: where a file of `path` would be made."""
    path = Path(path)
    return next((p for p in (path, *path.parents) if p.exists()), None)


def free_mb(path: str | Path) -> float | None:
    """Free MB on the file system that holds (or would hold) `path`; None where that cannot be read."""
    where = existing_directory(path)
    try:
        return shutil.disk_usage(where).free / 2**20 if where is not None else None
    except OSError:
        return None


def disk_full_error(where: str | Path, what: str) -> DiskFull:
    """The one line for a full disk: which file, which file system, how much is free, and the fix."""
    free = free_mb(where)
    room = "free space unknown" if free is None else f"{free:.0f} MB free"
    return DiskFull(
        f"the disk holding {where} is full ({room}) while writing {what}; the previous file is kept. "
        f"Fix: free space on that file system, or write elsewhere (hydra.run.dir=..., data.cache_dir=...)."
    )


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", **open_args):
    """A file object whose content replaces `path` atomically when the block ends: written to a temporary file in
    the same directory (so on the same file system, whatever $TMPDIR is), flushed, fsync-ed, given the umask's
    permissions, then renamed over `path`. On any error (a full disk, a kill) `path` keeps its previous content
    and the temporary file is removed; a SIGKILL can leave a `.<name>.*.tmp` beside it, which
    `remove_stale_temporaries` clears (checkpoints: before each save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        # before the partial file goes: a writer that reports a full disk in its own words (torch.save's
        # "unexpected pos") is recognised by the file system having no room left
        full = disk_full(err) or (isinstance(err, Exception) and _no_room(path.parent))
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise disk_full_error(path, path.name) from err
        raise
    fsync_directory(path.parent)


def _no_room(directory: Path) -> bool:
    """Whether the file system holding `directory` has (almost) no space left: under 64 KiB."""
    free = free_mb(directory)
    return free is not None and free < 64 / 1024


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically (`atomic_file`): a reader sees the old file or the new one."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def remove_stale_temporaries(directory: Path, name: str) -> None:
    """Remove `atomic_file`'s leftovers for `name` in `directory` (`.<name>.*.tmp`, left by a killed process)."""
    for leftover in directory.glob(f".{name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def strict_json(value):
    """`value` with every non-finite float (NaN, inf) as None: JSON that every reader accepts (json.dumps would
    write a bare NaN, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    """`data` as strict JSON (non-finite numbers as null), replaced atomically."""
    atomic_write_text(path, json.dumps(strict_json(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A Markdown table; `align` has one letter per column, `r` for right-aligned (default: all left)."""
    align = align or "l" * len(header)
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", sep]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def results_table(rows: dict[str, dict[str, float]], metrics: list[str]) -> str:
    """A small Markdown table: one row per evaluation (e.g. before/after training), one column per metric."""
    head = "| | " + " | ".join(metrics) + " |"
    sep = "|---|" + "---:|" * len(metrics)
    body = [
        f"| {name} | " + " | ".join(f"{vals.get(m, float('nan')):.2f}" for m in metrics) + " |"
        for name, vals in rows.items()
    ]
    return "\n".join([head, sep, *body])
