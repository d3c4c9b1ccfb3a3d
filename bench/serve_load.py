"""`fitwell serve` under load, beside `mlflow models serve` on the same run.

Run: python bench/serve_load.py [--requests 10000] [--concurrency 1 8 64] [--no-mlflow] [--no-onnx]

Trains a small MLP on a seeded 2,000-row table (numbers, categories, missing values), serves it with
`fitwell serve` (torch), with `fitwell serve --runtime onnx` (its exported graph in onnxruntime) and
as an MLflow pyfunc model with `mlflow models serve --env-manager local`, then sends ``--requests``
requests at each concurrency: 90% valid 1-row requests, 10% malformed for fitwell (wrong type,
missing field, unknown field, not JSON, empty body, a 10 MB body). Reports status codes (5xx and
dropped connections must be 0), p50/p99 latency and requests/s; then 256-row requests. Needs httpx
(in fitwell's dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def table(rows: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 12, rows).round(), "income": rng.lognormal(10, 0.5, rows),
                          "plan": rng.choice(["basic", "pro", "team"], rows),
                          "region": rng.choice([f"r{i}" for i in range(20)], rows)})
    frame.loc[rng.random(rows) < 0.05, "income"] = np.nan
    logit = (frame["age"] - 40) / 12 + (frame["plan"] == "pro") - 0.3
    frame["churn"] = (logit + rng.logistic(size=rows) > 0).astype(int)
    return frame


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def malformed(i: int, row: dict) -> tuple[bytes, str]:
    kind = i % 6
    if kind == 0:
        return json.dumps({"rows": [{**row, "age": "forty"}]}).encode(), "application/json"
    if kind == 1:
        without = {k: v for k, v in row.items() if k != "plan"}
        return json.dumps({"rows": [without]}).encode(), "application/json"
    if kind == 2:
        return json.dumps({"rows": [{**row, "colour": "red"}]}).encode(), "application/json"
    if kind == 3:
        return b"{this is not json", "application/json"
    if kind == 4:
        return b"", "application/json"
    return b"x" * (10 * 1024 * 1024 + 1), "application/json"


async def load(url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> dict:
    import httpx

    statuses: dict[str, int] = {}
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker():
            while not queue.empty():
                body, kind = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers={"content-type": kind})
                    key = f"{response.status_code // 100}xx"
                except httpx.HTTPError as err:
                    key = f"error {type(err).__name__}"
                latencies.append(time.perf_counter() - started)
                statuses[key] = statuses.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"statuses": statuses, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3), "rps": len(bodies) / seconds}


def wait_ready(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {seconds} s")


def start(command: list[str], ready: str, log: Path) -> subprocess.Popen:
    # the venv's scripts on PATH: mlflow starts `uvicorn` by name. Output to a file: a pipe nobody
    # reads fills up and blocks a server that logs every request (MLflow's does)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PATH=path))
    wait_ready(ready, process, log)
    return process


def mlflow_server(run: Path, folder: Path) -> tuple[subprocess.Popen, str] | None:
    try:
        import mlflow.pyfunc
    except ImportError:
        return None
    code = Path(__file__).resolve().parents[1] / "src" / "fitwell" / "serve" / "mlflow_pyfunc.py"
    model = folder / "mlflow-model"
    mlflow.pyfunc.save_model(str(model), python_model=str(code), artifacts={"run": str(run)})
    port = free_port()
    process = start([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model), "-p", str(port),
                     "--env-manager", "local"], f"http://127.0.0.1:{port}/ping", folder / "mlflow.log")
    return process, f"http://127.0.0.1:{port}/invocations"


def report(name: str, result: dict) -> None:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items()))
    print(f"  {name:<44} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.1f} ms  p99"
          f" {result['p99_ms']:7.1f} ms  ({statuses})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = table()
        frame.to_csv(folder / "train.csv", index=False)
        subprocess.run([sys.executable, "-m", "fitwell", "train", str(folder / "train.csv"), "--target",
                        "churn", "preset=null", "train.epochs=10", f"track.runs_dir={folder / 'runs'}",
                        "track.name=run", "--quiet"], check=True, capture_output=True)
        run = folder / "runs" / "run"
        port = free_port()
        servers = [start([sys.executable, "-m", "fitwell", "serve", str(run), "--port", str(port)],
                         f"http://127.0.0.1:{port}/ready", folder / "fitwell.log")]
        targets = {"fitwell serve": f"http://127.0.0.1:{port}/predict"}
        if not args.no_onnx:  # the same run through its exported graph in onnxruntime
            subprocess.run([sys.executable, "-m", "fitwell", "export", str(run)], check=True,
                           capture_output=True)
            onnx_port = free_port()
            servers.append(start([sys.executable, "-m", "fitwell", "serve", str(run), "--port",
                                  str(onnx_port), "--runtime", "onnx"], f"http://127.0.0.1:{onnx_port}/ready",
                                 folder / "fitwell-onnx.log"))
            targets["fitwell serve --runtime onnx"] = f"http://127.0.0.1:{onnx_port}/predict"
        if not args.no_mlflow:
            started = mlflow_server(run, folder)
            if started is not None:
                servers.append(started[0])
                targets["mlflow models serve"] = started[1]
        try:
            run_load(args, frame.drop(columns=["churn"]), targets)
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=30)


def run_load(args, features: pd.DataFrame, targets: dict[str, str]) -> None:
    rows = json.loads(features.to_json(orient="records"))
    print(f"{args.requests} requests per line, 1 row each, 10% malformed (fitwell only)")
    for concurrency in args.concurrency:
        for name, url in targets.items():
            bodies = []
            for i in range(args.requests):
                row = rows[i % len(rows)]
                if name.startswith("fitwell") and i % 10 == 9:
                    bodies.append(malformed(i // 10, row))
                elif name.startswith("fitwell"):
                    bodies.append((json.dumps({"rows": [row]}).encode(), "application/json"))
                else:
                    bodies.append((json.dumps({"dataframe_records": [row]}).encode(), "application/json"))
            report(f"{name}, concurrency {concurrency}", asyncio.run(load(url, bodies, concurrency)))
    print("256-row requests, concurrency 8")
    for name, url in targets.items():
        key = "rows" if name.startswith("fitwell") else "dataframe_records"
        bodies = [(json.dumps({key: rows[i % 7 * 256:(i % 7 + 1) * 256]}).encode(), "application/json")
                  for i in range(max(50, args.requests // 20))]
        report(f"{name}, 256 rows", asyncio.run(load(url, bodies, 8)))


if __name__ == "__main__":
    main()
