"""Data preparation at scale: time and peak memory of tokenizing a training split, cache miss and hit.

    python -m scripts.bench_data                                  # 10k, 100k, 1M rows, Gigaword- and DiscoFuse-like
    python -m scripts.bench_data --rows 100000 --kinds gigaword --serial   # also with one tokenizer thread
    python -m scripts.bench_data --rows 1000000 --source parquet  # the Hub loader's path: a local Parquet dataset

Each measurement is a process of its own (peak RSS is per process), composed as `python -m src.train` composes
it (`data=gigaword` or `data=discofuse` with `data.path`, or `data.hub_name` for --source parquet, the MiniLM
encoder and decoder). The child builds the model, then times `split("train")` and the first training batch.
"miss" starts from an empty cache; "hit" reads the entry the miss wrote. "RSS growth" is the miss's peak RSS
minus the hit's: what tokenizing adds over reading the cache. The files come from scripts/bench/scale_data.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hydra import compose, initialize_config_dir

from scripts.bench.scale_data import write_scale_file
from scripts.bench.workloads import MINILM
from src.config.schema import train_config
from src.run.assemble import build_datamodule, build_module
from src.system.paths import REPO
from src.system.process import setup_process


def write_parquet_dataset(jsonl: Path, directory: Path, block: int = 100_000) -> Path:
    """The JSONL file as a local dataset repository of Parquet shards (`data/train-*.parquet`), as the Hub
    serves a dataset; `datasets.load_dataset(directory)` reads it like a Hub id."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    rows, shard = [], 0
    with jsonl.open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == block:
                pq.write_table(pa.Table.from_pylist(rows), directory / "data" / f"train-{shard:05d}.parquet")
                rows, shard = [], shard + 1
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), directory / "data" / f"train-{shard:05d}.parquet")
    return directory


def child(job: dict) -> dict:
    overrides = [
        f"data={job['kind']}",
        f"encoder.checkpoint={MINILM}",
        f"decoder.checkpoint={MINILM}",
        "encoder=minilm",
        "decoder=minilm",
        f"data.cache_dir={job['cache']}",
        f"data.parallel_tokenization={str(job['parallel']).lower()}",
        "logger=none",
        "progress=none",
    ]
    if job["source"] == "parquet":
        overrides += [f"data.hub_name={job['data']}", "data.hub_config=null", "data.hub_revision=null"]
    else:
        overrides += [f"data.path={job['data']}"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = train_config(compose("train", overrides=[*overrides, "output_dir=unused"]))
    setup_process(cfg.reuse_host_memory)
    module = build_module(cfg)
    dm = build_datamodule(cfg.data, module, seed=0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    split = dm.split("train")
    prepared = time.perf_counter() - start
    next(iter(dm.train_dataloader()))
    first_batch = time.perf_counter() - start
    return {
        "rows": len(split),
        "seconds": prepared,
        "first_batch_s": first_batch,
        "rows_per_s": len(split) / prepared,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before,
    }


def spawn(job: dict) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if job.get("hf_cache"):  # where `datasets` keeps the Arrow files it makes of a Parquet dataset
        env["HF_DATASETS_CACHE"] = job["hf_cache"]
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.bench_data", "--child", json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_data: {job} failed (see above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--kinds", nargs="+", default=["gigaword", "discofuse"], choices=["gigaword", "discofuse"]
    )
    parser.add_argument("--source", default="jsonl", choices=["jsonl", "parquet"])
    parser.add_argument("--serial", action="store_true", help="also measure with one tokenizer thread")
    parser.add_argument("--work", default=None, help="where the generated files go (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-data-"))
    results = []
    print(
        "| kind | rows | threads | miss s | rows/s | hit s | hit first batch s | miss peak RSS MB | "
        "hit peak RSS MB | RSS growth MB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds:
        for rows in args.rows:
            jsonl = work / f"{kind}-{rows}" / "train.jsonl"
            if not jsonl.is_file():
                write_scale_file(kind, rows, jsonl)
            data = jsonl.parent
            if args.source == "parquet":
                data = work / f"{kind}-{rows}-parquet"
                if not data.is_dir():
                    write_parquet_dataset(jsonl, data)
            for parallel in [True, False] if args.serial else [True]:
                cache = work / f"cache-{kind}-{rows}-{parallel}"
                shutil.rmtree(cache, ignore_errors=True)
                job = {
                    "kind": kind,
                    "data": str(data),
                    "cache": str(cache),
                    "parallel": parallel,
                    "source": args.source,
                    "hf_cache": str(work / "hf"),
                }
                miss, hit = spawn(job), spawn(job)
                shutil.rmtree(cache, ignore_errors=True)
                row = {"kind": kind, "rows": miss["rows"], "parallel": parallel, "miss": miss, "hit": hit}
                results.append(row)
                print(
                    f"| {kind} | {miss['rows']:,} | {'all' if parallel else 'one'} | {miss['seconds']:.1f} | "
                    f"{miss['rows_per_s']:,.0f} | {hit['seconds']:.2f} | {hit['first_batch_s']:.2f} | "
                    f"{miss['peak_rss_mb']:,.0f} | {hit['peak_rss_mb']:,.0f} | "
                    f"{miss['peak_rss_mb'] - hit['peak_rss_mb']:,.0f} |",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
