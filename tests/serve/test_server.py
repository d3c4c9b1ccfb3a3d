"""`fitwell serve`: a real uvicorn server on a free localhost port, started as a process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fitwell.cli import run_cli
from tests.conftest import make_mixed_frame
from tests.test_cli import only_run

KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: bytes | None = None, content_type: str = "application/json", key: str | None = KEY,
         method: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"))
    if body is not None:
        request.add_header("content-type", content_type)
    if key:
        request.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    frame = make_mixed_frame()
    frame.to_csv(folder / "train.csv", index=False)
    (folder / "run.yaml").write_text(f"data: {{source: {folder / 'train.csv'}, target: label}}\n"
                                     "train: {epochs: 8, progress: false}\n"
                                     f"track: {{runs_dir: {folder / 'runs'}}}\n")
    assert run_cli(["train", str(folder / "run.yaml")]) == 0
    run = only_run(folder / "runs")
    port = free_port()
    env = dict(os.environ, FITWELL_API_KEY=KEY)
    log = open(folder / "server.log", "wb")  # noqa: SIM115 -- a pipe nobody reads could fill and block it
    process = subprocess.Popen([sys.executable, "-m", "fitwell", "serve", str(run), "--port", str(port),
                                "--max-rows", "500", "--max-body-mb", "1"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if call(f"{base}/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if process.poll() is not None:
                raise AssertionError((folder / "server.log").read_text())
            time.sleep(0.25)
        else:
            raise AssertionError("the server did not become ready in 60 s")
        yield base, run, folder, frame
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def rows_of(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.slow
def test_server_predicts_what_fitwell_predict_writes(server, capsys):
    base, run, folder, frame = server
    new = frame.drop(columns=["label"]).head(40).copy()
    new.loc[new.index[:3], "color"] = "ultraviolet"  # unseen category: the unknown bucket, as in predict
    new.loc[new.index[3:6], "x1"] = None  # missing: imputed, as in predict
    new.to_csv(folder / "new.csv", index=False)
    out = folder / "p.csv"
    assert run_cli(["predict", str(run), "--data", str(folder / "new.csv"), "--out", str(out)]) == 0
    expected = pd.read_csv(out)

    status, body = call(f"{base}/predict", json.dumps({"rows": rows_of(new)}).encode())
    assert status == 200, body
    served = pd.DataFrame(json.loads(body)["predictions"])
    assert (served["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()
    assert abs(served["proba_1"] - expected["proba_1"]).max() < 1e-6

    columns = {c: json.loads(new[c].to_json(orient="values")) for c in new.columns}
    status, body = call(f"{base}/predict", json.dumps({"columns": columns}).encode())
    assert status == 200 and pd.DataFrame(json.loads(body)["predictions"])["proba_1"].round(6).tolist() == \
        served["proba_1"].round(6).tolist()
    status, body = call(f"{base}/predict", new.to_csv(index=False).encode(), content_type="text/csv")
    assert status == 200 and len(json.loads(body)["predictions"]) == 40

    # concurrent requests are micro-batched and each still gets its own rows back
    singles = [new.iloc[[i]] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda f: call(f"{base}/predict", json.dumps({"rows": rows_of(f)}).encode()),
                                singles))
    got = [json.loads(b)["predictions"][0]["proba_1"] for _, b in answers]
    assert [s for s, _ in answers] == [200] * 24
    assert max(abs(g - e) for g, e in zip(got, expected["proba_1"][:24], strict=True)) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("body, content_type, status, names", [
    ({"rows": [{"x1": "abc", "x2": 1, "color": "red", "city": "c", "flag": "yes"}]}, None, 422, "x1"),
    ({"rows": [{"x2": 1, "color": "red", "city": "c", "flag": "yes"}]}, None, 422, "x1"),  # missing
    ({"rows": [{"x1": 1, "x2": 1, "color": "red", "city": "c", "flag": "yes", "colour": "x"}]}, None, 422,
     "colour"),  # unknown field
    ({"rows": [{"x1": [1], "x2": 1, "color": "red", "city": "c", "flag": "yes"}]}, None, 422, "x1"),
    (b"{not json", None, 400, "JSON"),
    (b"", None, 400, "empty"),
    ({"rows": "x"}, None, 422, "rows"),
    ({"something": []}, None, 422, "rows"),
    ({"columns": {"x1": [1, 2], "x2": [1]}}, None, 422, "lengths"),
    ({"rows": []}, None, 422, "no rows"),
    ({"rows": [{"x1": 0.1}] * 501}, None, 413, "500"),  # over --max-rows
    (b"x" * (1024 * 1024 + 10), None, 413, "limit"),  # over --max-body-mb
    (b"x1,x2,color,city\n1,2,red,c\n", "text/csv", 422, "flag"),
    (b"x1,x2,color,city,flag\nabc,2,red,c,yes\n", "text/csv", 422, "x1"),
])
def test_malformed_requests_get_a_4xx_naming_the_problem(server, body, content_type, status, names):
    base = server[0]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer = call(f"{base}/predict", data, content_type=content_type or "application/json")
    assert got == status, answer
    assert names in json.loads(answer)["detail"]


@pytest.mark.slow
def test_ids_and_the_target_may_come_along(server):
    base, _, _, frame = server
    status, body = call(f"{base}/predict", json.dumps({"rows": rows_of(frame.head(3))}).encode())
    assert status == 200 and len(json.loads(body)["predictions"]) == 3


@pytest.mark.slow
def test_schema_health_metrics_and_the_api_key(server):
    base = server[0]
    status, body = call(f"{base}/schema")
    schema = json.loads(body)
    assert status == 200 and schema["task"] == "binary"
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds == {"x1": "number", "x2": "number", "color": "category", "city": "category",
                     "flag": "boolean"}
    assert "red" in next(c for c in schema["columns"] if c["name"] == "color")["categories"]
    assert "customer_id" in schema["ignored_columns"]

    assert call(f"{base}/predict", b'{"rows": []}', key=None)[0] == 401
    assert call(f"{base}/predict", b'{"rows": []}', key="wrong")[0] == 401
    assert call(f"{base}/schema", key=None)[0] == 401
    assert call(f"{base}/health", key=None)[0] == 200  # liveness needs no key
    assert call(f"{base}/docs")[0] == 200 and call(f"{base}/openapi.json")[0] == 200

    frame = server[3]
    assert call(f"{base}/predict", json.dumps({"rows": rows_of(frame.head(120))}).encode())[0] == 200
    status, body = call(f"{base}/drift")  # the rows served, against the training split
    drift = json.loads(body)
    assert status == 200 and drift["rows"] >= 120 and set(drift["columns"]) == set(kinds)
    assert "prediction" in drift and isinstance(drift["drifted_columns"], list)

    status, body = call(f"{base}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert status == 200
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["fitwell_requests"].samples
                if s.name == "fitwell_requests_total"}
    assert requests[("/predict", "401")] >= 2 and requests[("/schema", "200")] >= 1
    assert "fitwell_request_seconds" in families and "fitwell_prediction_confidence" in families
    columns = {s.labels["column"] for s in families["fitwell_feature_drift"].samples}
    assert {"x1", "color", "(predictions)"} <= columns and "fitwell_drift_share" in families


def test_a_changed_byte_is_refused_by_serve(tmp_path, mixed_frame, capsys):
    mixed_frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "run.yaml").write_text(f"data: {{source: {tmp_path / 'train.csv'}, target: label}}\n"
                                       f"train: {{epochs: 2, progress: false}}\n"
                                       f"track: {{runs_dir: {tmp_path / 'runs'}}}\n")
    assert run_cli(["train", str(tmp_path / "run.yaml")]) == 0
    run = only_run(tmp_path / "runs")
    weights = bytearray((run / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (run / "model.safetensors").write_bytes(bytes(weights))
    capsys.readouterr()
    assert run_cli(["serve", str(run), "--port", str(free_port())]) == 2
    assert "model.safetensors" in capsys.readouterr().err
