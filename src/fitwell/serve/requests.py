"""What a ``POST /predict`` request may hold and how it becomes rows: JSON rows, JSON columns or a
CSV body, validated against the run's generated row model, within the server's limits."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pandas as pd
from fastapi import Request
from pydantic import TypeAdapter, ValidationError


@dataclass(frozen=True)
class ServeSettings:
    """Limits and switches of one server."""

    max_rows: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    api_key_env: str = "FITWELL_API_KEY"
    batch_window_ms: float = 0.0  # 0: a batch is whatever queued while the previous one ran
    max_batch_rows: int = 4_096
    drift_window: int = 5_000  # the latest rows served, compared with training on /drift and /metrics
    drift_every_s: float = 30.0  # /metrics recomputes the drift gauges at most this often
    runtime: str = "torch"  # or onnx: the run's model.onnx (fitwell export) in onnxruntime


class RequestProblem(Exception):
    """A request the server refuses: its status code and a message that says what to fix."""

    def __init__(self, status: int, message: str, errors: list | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


async def read_body(request: Request, settings: ServeSettings) -> bytes:
    """The body, counted as it arrives (a chunked body has no content-length to check). An oversized
    one is read to its end (up to 8x the limit) and dropped, so the client gets the 413 rather than a
    reset connection."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= settings.max_body_bytes:
            chunks.append(chunk)
        elif size > settings.max_body_bytes * 8:
            break
    if size > settings.max_body_bytes:
        raise RequestProblem(413, f"request body over the limit of {settings.max_body_bytes:,} bytes;"
                                  " send fewer rows per request")
    return b"".join(chunks)


async def read_rows(request: Request, settings: ServeSettings, rows_adapter: TypeAdapter,
                    columns: list[dict], ignored: dict[str, str]) -> pd.DataFrame:
    """The request's rows as a frame of the run's input columns, validated."""
    body = await read_body(request, settings)
    if not body.strip():
        raise RequestProblem(400, 'empty body: send {"rows": [{...}]}, {"columns": {...}} or a CSV')
    if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
        return csv_rows(body, settings, columns, ignored)
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestProblem(400, f"body is not valid JSON ({err}); send {{\"rows\": [{{...}}]}}") from err
    rows = json_rows(payload)
    if len(rows) > settings.max_rows:
        raise RequestProblem(413, f"{len(rows):,} rows in one request; the limit is {settings.max_rows:,}")
    if not rows:
        raise RequestProblem(422, "no rows to predict")
    try:
        validated = rows_adapter.validate_python(rows)
    except ValidationError as err:
        errors = [{"loc": ["rows", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        first = errors[0]
        raise RequestProblem(422, f"row {first['loc'][1]}, column {first['loc'][2]!r}: {first['msg']}"
                                  if len(first["loc"]) > 2 else f"{first['loc']}: {first['msg']}",
                             errors[:50]) from err
    return pd.DataFrame([row.model_dump(by_alias=True) for row in validated],
                        columns=[c["name"] for c in columns])


def json_rows(payload) -> list:
    """Rows from ``{"rows": [...]}`` or ``{"columns": {name: [...]}}``."""
    if not isinstance(payload, dict) or len({"rows", "columns"} & set(payload)) != 1 or len(payload) != 1:
        raise RequestProblem(422, 'the body must be {"rows": [{column: value, ...}, ...]} or'
                                  ' {"columns": {column: [values], ...}}')
    if "rows" in payload:
        if not isinstance(payload["rows"], list):
            raise RequestProblem(422, '"rows" must be a list of objects, one per row')
        return payload["rows"]
    table = payload["columns"]
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise RequestProblem(422, '"columns" must map each column to a list of values')
    lengths = {name: len(values) for name, values in table.items()}
    if len(set(lengths.values())) > 1:
        raise RequestProblem(422, f"columns of different lengths: {lengths}")
    count = next(iter(lengths.values()), 0)
    return [{name: values[i] for name, values in table.items()} for i in range(count)]


def csv_rows(body: bytes, settings: ServeSettings, columns: list[dict], ignored: dict) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise RequestProblem(400, f"body is not a readable CSV ({str(err)[:200]})") from err
    if len(frame) > settings.max_rows:
        raise RequestProblem(413, f"{len(frame):,} rows in one request; the limit is {settings.max_rows:,}")
    names = [c["name"] for c in columns]
    missing = [n for n in names if n not in frame.columns]
    unknown = [n for n in frame.columns if n not in names and n not in ignored]
    if missing or unknown:
        raise RequestProblem(422, f"CSV columns do not match the run: missing {missing}, unknown {unknown}")
    for column in (c["name"] for c in columns if c["kind"] == "number"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & numbers.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise RequestProblem(422, f"row {row}, column {column!r}: {frame[column].iloc[row]!r} is not a"
                                      " number")
    return frame[names]


