"""Tables larger than memory: peak private memory and time per row as the table grows, streamed
(``data.out_of_core: true``) against in memory.

Run: python bench/scale.py [--rows 1000000 4000000 16000000] [--in-memory-at 1000000]

For each size the bench writes a synthetic table of 45 numbers, 5 categories (20 levels) and a
binary target to Parquet (row groups of 100,000 rows), then runs ``fitwell train`` on it in a
subprocess (1 epoch, batch 1024, one 64-unit layer, report off) while sampling the subprocess's
RssAnon -- private memory; the memory map's file-backed pages do not count -- every 50 ms. Prints
peak private MB, seconds, microseconds per row and the training epoch's rows/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=45)
    writer = None
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        numbers = rng.normal(size=(n, 45)).astype("float32")
        levels = rng.integers(0, 20, size=(n, 5))
        logit = numbers @ weights / 6 + (levels[:, 0] < 5)
        columns = {f"x{i}": numbers[:, i] for i in range(45)}
        columns.update({f"c{i}": np.char.add("level", levels[:, i].astype(str)) for i in range(5)})
        columns["y"] = (logit + rng.logistic(size=n) > 0).astype("int8")
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def rss_anon(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(folder: Path, table: Path, streamed: bool, name: str) -> dict:
    config = {"data": {"source": str(table), "target": "y", "out_of_core": streamed, "sample_rows": 100_000},
              "model": {"hidden_sizes": [64]}, "seed": 0,
              "train": {"epochs": 1, "batch_size": 1024, "early_stopping": {"enabled": False}},
              "explain": {"permutation": False}, "track": {"runs_dir": str(folder / "runs"), "name": name,
                                                          "report": False}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "fitwell", "train", str(path), "-q"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while job.poll() is None:
        peak = max(peak, rss_anon(job.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if job.returncode:
        raise SystemExit(job.stderr.read()[-3000:])
    run_dir = folder / "runs" / name
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    data = json.loads((run_dir / "data.json").read_text())
    return {"peak_mb": peak / 2**20, "seconds": seconds, "epoch_s": history[0]["seconds"],
            "train_rows": data["split"]["train"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    parser.add_argument("--in-memory-at", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitwell-scale-") as tmp:
        folder = Path(tmp)
        print("rows        mode        peak private MB   seconds   us/row   epoch rows/s")
        for rows in args.rows:
            table = folder / f"table-{rows}.parquet"
            write_table(table, rows)
            modes = [True] + ([False] if rows == args.in_memory_at else [])
            for streamed in modes:
                result = run(folder, table, streamed, f"{'streamed' if streamed else 'memory'}-{rows}")
                mode = "streamed" if streamed else "in memory"
                print(f"{rows:>10,}  {mode:<10} {result['peak_mb']:>15,.0f}"
                      f" {result['seconds']:>9.1f} {1e6 * result['seconds'] / rows:>8.2f}"
                      f" {result['train_rows'] / result['epoch_s']:>14,.0f}", flush=True)
            table.unlink()


if __name__ == "__main__":
    main()
