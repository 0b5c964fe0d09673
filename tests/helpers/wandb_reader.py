"""A small reader for W&B's offline run files (`run-<id>.wandb`), which the wandb package does not expose.

The file is a LevelDB-style log: a 7-byte header (b":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of
records, each with a 7-byte header (CRC32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last);
a block's tail shorter than a header is padding. Each record is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            continue
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:  # first or middle part of a record that spans blocks
            pending += chunk


@dataclass
class RunFile:
    """What a run file says: run metadata, config, history keys, summary, tables, artifacts, exit code."""

    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> RunFile:
    run = RunFile()
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.run_id, run.name, run.group, run.job_type = r.run_id, r.display_name, r.run_group, r.job_type
            run.tags = list(r.tags)
            for item in r.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            run.artifacts.append(rec.artifact.name)
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def run_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("run-*.wandb"))
