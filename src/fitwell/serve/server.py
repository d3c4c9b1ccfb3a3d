"""``fitwell serve RUN``: the run behind a REST API (FastAPI + uvicorn).

``POST /predict`` takes JSON rows (``{"rows": [{...}]}``), JSON columns (``{"columns": {"age":
[...]}}``) or a CSV body (``content-type: text/csv``) and answers what ``fitwell predict`` writes,
row for row. ``GET /health`` (the process is up), ``GET /ready`` (the model is loaded and has
answered a warm-up request), ``GET /schema`` (the input columns, kinds and training categories),
``GET /metrics`` (Prometheus text, drift gauges included), ``GET /drift`` (the latest
``drift_window`` rows served against the training split, as ``fitwell monitor`` compares them),
``GET /docs`` (OpenAPI). A missing column, wrong type or unknown
field is a 422 naming it; too many rows or too large a body a 413; a wrong or missing API key a 401
(when the key's environment variable is set). Requests are micro-batched: those arriving within
``batch_window_ms`` of each other are predicted together, so throughput grows with concurrency.
The run is verified against its manifest when loaded (a changed byte is refused).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import TypeAdapter

from fitwell.errors import UserError
from fitwell.serve.bundle import load_run
from fitwell.serve.requests import RequestProblem, ServeSettings, read_rows
from fitwell.serve.schema import column_schema, row_model
from fitwell.serve.telemetry import Telemetry


def build_app(run_path, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The FastAPI app serving the run at ``run_path``."""
    run = load_run(run_path)
    if run.task in ("reinforcement", "clustering", "anomaly", "embedding"):
        raise UserError(f"{run.path} is a {run.task} run; fitwell serve serves supervised runs so far --"
                        f" use fitwell predict {run.path} (or fitwell.load_run(...).predict in your own app)")
    columns = column_schema(run.preprocessor)
    plan = run.preprocessor.plan  # raw columns training did not use may come along, unused
    ignored = {**plan.dropped, plan.target: "the target"}
    rows_adapter = TypeAdapter(list[row_model(columns, ignored)])
    telemetry = Telemetry(run.task, run.classes)
    window = DriftWindow(run, settings)
    batcher = Batcher(predictor(run, settings.runtime), settings, telemetry, window)
    app = FastAPI(title=f"fitwell: {run.path.name}", version="1", lifespan=warm_up(batcher, columns),
                  description=f"Predictions of the fitwell run {run.path.name} ({run.task}).")
    app.state.ready = False
    install_guard(app, settings, telemetry)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        if not app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "run": run.path.name, "task": run.task}

    @app.get("/schema")
    def schema() -> dict:
        return {"run": run.path.name, "task": run.task, "classes": run.classes, "columns": columns,
                "ignored_columns": ignored, "max_rows": settings.max_rows,
                "max_body_bytes": settings.max_body_bytes}

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        drift = window.drift(max_age=settings.drift_every_s)
        if drift is not None:
            telemetry.drifted(drift)
        return PlainTextResponse(telemetry.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/drift")
    def drift():
        result = window.drift(max_age=0)
        if result is None:
            return JSONResponse({"detail": window.why_not()}, status_code=409)
        return result

    @app.post("/predict", openapi_extra=request_body_doc(rows_adapter))
    async def predict(request: Request):
        try:
            frame = await read_rows(request, settings, rows_adapter, columns, ignored)
            table = await batcher.predict(frame)
        except RequestProblem as problem:
            return problem_response(problem)
        body = f'{{"run":{json.dumps(run.path.name)},"predictions":{table.to_json(orient="records")}}}'
        return Response(body, media_type="application/json")  # no re-encoding of a finished JSON

    return app


def predictor(run, runtime: str):
    """What predicts: the run itself (torch) or its exported graph (onnxruntime)."""
    if runtime == "torch":
        return run
    if runtime == "onnx":
        from fitwell.serve.export import OnnxPredictor

        return OnnxPredictor(run)
    raise UserError(f"--runtime {runtime!r}: torch or onnx")


def warm_up(batcher: Batcher, columns: list[dict]):
    """Start the batcher and predict one all-missing row before /ready says yes: the first
    prediction pays one-off costs, not a user."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        await batcher.predict(pd.DataFrame([{c["name"]: None for c in columns}]), record=False)
        app.state.ready = True
        yield

    return lifespan


def install_guard(app: FastAPI, settings: ServeSettings, telemetry: Telemetry) -> None:
    """Every request: the API key and the body size checked first, then counted and timed."""
    app.add_middleware(Guard, settings=settings, telemetry=telemetry)


class Guard:
    """A plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs a task and a copy of every
    body per request): refuses a wrong key or an announced oversized body before the route runs,
    and counts every response by route and status."""

    def __init__(self, app, settings: ServeSettings, telemetry: Telemetry):
        self.app, self.settings, self.telemetry = app, settings, telemetry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, seen = time.perf_counter(), {}

        async def record(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            check_key(scope["path"], headers, self.settings)
            check_size(headers, self.settings)
        except RequestProblem as problem:
            await drain(receive, self.settings.max_body_bytes * 8)
            await problem_response(problem)(scope, receive, record)
        else:
            await self.app(scope, receive, record)
        self.telemetry.observe(scope["path"], seen.get("status", 500), time.perf_counter() - started)


async def drain(receive, cap: int) -> None:
    """Read and drop a refused request's body (up to ``cap`` bytes) before answering: a client still
    sending when the server answers and closes sees a reset connection, not the 413."""
    size = 0
    while size <= cap:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def problem_response(problem: RequestProblem) -> JSONResponse:
    body: dict[str, Any] = {"detail": problem.message}
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status)


def check_key(path: str, headers: dict[str, str], settings: ServeSettings) -> None:
    """With the key's environment variable set, every route but /health needs ``x-api-key``."""
    expected = os.environ.get(settings.api_key_env)
    if not expected or path == "/health":
        return
    given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise RequestProblem(401, f"missing or wrong API key: send it in the x-api-key header (the server"
                                  f" reads it from ${settings.api_key_env})")


def check_size(headers: dict[str, str], settings: ServeSettings) -> None:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
        raise RequestProblem(413, f"request body of {int(length):,} bytes is over the limit of"
                                  f" {settings.max_body_bytes:,}; send fewer rows per request")


class DriftWindow:
    """The latest ``drift_window`` rows served and their predictions, against the run's
    ``reference.json`` (fitwell.evaluate.drift, the run's ``monitor`` thresholds)."""

    MIN_ROWS = 100

    def __init__(self, run, settings: ServeSettings):
        path = run.path / "reference.json"
        self.reference = run.dir.read_json(path) if path.exists() else None
        self.limits, self.size = run.config.monitor, settings.drift_window
        self.parts: deque = deque()
        self.rows, self.lock = 0, threading.Lock()
        self.last: tuple[float, dict] | None = None

    def add(self, frame: pd.DataFrame, table: pd.DataFrame) -> None:
        with self.lock:
            self.parts.append((frame, table))
            self.rows += len(frame)
            while self.parts and self.rows - len(self.parts[0][0]) >= self.size:
                self.rows -= len(self.parts.popleft()[0])

    def why_not(self) -> str:
        if self.reference is None:
            return "this run has no reference.json (trained before fitwell saved drift references)"
        return f"{self.rows} rows served so far; drift needs at least {self.MIN_ROWS}"

    def drift(self, max_age: float) -> dict | None:
        """The window's drift, recomputed when older than ``max_age`` seconds; None when it cannot be
        told yet."""
        from fitwell.evaluate.drift import compare

        if self.reference is None or self.rows < self.MIN_ROWS:
            return None
        if self.last is not None and time.monotonic() - self.last[0] < max_age:
            return self.last[1]
        with self.lock:
            frame = pd.concat([f for f, _ in self.parts], ignore_index=True)
            table = pd.concat([t for _, t in self.parts], ignore_index=True)
        result = compare(self.reference, frame, table, self.limits)
        self.last = (time.monotonic(), result)
        return result


class Batcher:
    """Predicts requests together: while one batch is being predicted (on a worker thread, so the
    event loop keeps reading requests), the next ones queue up and are predicted as one frame; with
    ``batch_window_ms`` > 0 a batch also waits that long for company. Counts what was predicted
    (telemetry, drift window) on the worker thread too."""

    def __init__(self, run, settings: ServeSettings, telemetry: Telemetry, window: DriftWindow):
        self.run, self.settings, self.telemetry, self.window = run, settings, telemetry, window
        self.queue: asyncio.Queue | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.serve_forever())

    async def predict(self, frame: pd.DataFrame, record: bool = True) -> pd.DataFrame:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((frame, future, record))
        return await future

    async def serve_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            rows = len(batch[0][0])
            deadline = time.monotonic() + self.settings.batch_window_ms / 1000
            while rows < self.settings.max_batch_rows:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self.queue.get(), left))
                    except asyncio.TimeoutError:
                        break
                rows += len(batch[-1][0])
            await self.answer(batch)

    async def answer(self, batch: list) -> None:
        try:
            tables = await asyncio.to_thread(self.predict_frames, batch)
        except Exception:  # one request's rows broke the shared batch: answer each on its own
            tables = []
            for item in batch:
                try:
                    tables.append((await asyncio.to_thread(self.predict_frames, [item]))[0])
                except Exception as err:  # noqa: BLE001 -- becomes this request's 422
                    tables.append(err)
        for (_, future, _), table in zip(batch, tables, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(table, Exception):
                message = str(table) if isinstance(table, UserError) else f"{type(table).__name__}: {table}"
                future.set_exception(RequestProblem(422, f"cannot predict these rows: {message}"))
            else:
                future.set_result(table)

    def predict_frames(self, batch: list) -> list[pd.DataFrame]:
        frames = [frame for frame, _, _ in batch]
        joined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        table = self.run.predict(joined)
        recorded = [record for _, _, record in batch]
        if all(recorded):
            self.telemetry.predicted(table)
            self.window.add(joined, table)
        out, start = [], 0
        for frame in frames:
            out.append(table.iloc[start:start + len(frame)].reset_index(drop=True))
            start += len(frame)
        return out


def request_body_doc(rows_adapter: TypeAdapter) -> dict:
    """The request body in the OpenAPI docs (the endpoint reads the body itself: JSON or CSV)."""
    rows = rows_adapter.json_schema()
    row = rows.get("items", {})
    if "$ref" in row:
        row = rows.get("$defs", {}).get(row["$ref"].rsplit("/", 1)[-1], {})
    schema = {"type": "object", "properties": {
        "rows": {"type": "array", "items": row},
        "columns": {"type": "object", "additionalProperties": {"type": "array"}}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema}, "text/csv": {"schema": {"type": "string"}}}}}


def serve(run_path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings = ServeSettings(),
          log_level: str = "warning", announce=None) -> None:
    """Run the server until interrupted (binds 127.0.0.1 unless ``host`` says otherwise);
    ``announce()`` is called once the run has loaded, before the server starts."""
    import uvicorn

    app = build_app(run_path, settings)
    if announce is not None:
        announce()
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30)
