"""The packaged model outside texpress's own process: `mlflow.pyfunc.load_model` in a fresh
interpreter, and a real `mlflow server --serve-artifacts` plus `mlflow models serve` answering a
compress request over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from texpress.codec.api import Codec
from texpress.registry.pyfunc import b64
from texpress.registry.refs import resolve_checkpoint
from texpress.registry.register import register_checkpoint

from ..servers import free_port, log_tail, start, stop

MLFLOW = str(Path(sys.executable).parent / "mlflow")

FRESH = """
import base64, json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
data = [base64.b64encode(open(p, "rb").read()).decode() for p in sys.argv[2:]] + ["not base64!"]
tpx = model.predict(pd.DataFrame({"data": data}))
png = model.predict(pd.DataFrame({"data": tpx["data"][:1]}), params={"mode": "decompress"})
print(json.dumps({"tpx": tpx.to_dict("records"), "png": png.to_dict("records"),
                  "inputs": [c.name for c in model.metadata.get_input_schema().inputs],
                  "params": [p.name for p in model.metadata.get_params_schema().params]}))
"""


def test_pyfunc_loads_in_a_fresh_process(store, checkpoints, images):
    r = register_checkpoint(checkpoints["good"], "tx", tracking_uri=store)
    files = sorted(images.glob("*.png"))
    proc = subprocess.run([sys.executable, "-c", FRESH, f"models:/tx/{r.version}", *map(str, files)],
                          capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": store})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["inputs"] == ["data"] and out["params"] == ["mode"]
    codec = Codec.from_checkpoint(checkpoints["good"])
    for row, path in zip(out["tpx"], files):
        assert row["error"] == "" and base64.b64decode(row["data"]) == codec.compress(path)
    bad = out["tpx"][-1]
    assert bad["data"] == "" and "base64" in bad["error"]
    restored = base64.b64decode(out["png"][0]["data"])
    expected = codec.decompress(codec.compress(files[0]))
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(restored)).tobytes() == expected.tobytes()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the process exited ({proc.returncode}): {log_tail(log)}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture()
def mlflow_server(tmp_path, monkeypatch):
    """`mlflow server` on 127.0.0.1 with a sqlite backend and --serve-artifacts, state in tmp_path."""
    monkeypatch.setenv("TEXPRESS_CACHE_DIR", str(tmp_path / "cache"))
    port = free_port()
    proc = start([MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--serve-artifacts",
                  "--artifacts-destination", str(tmp_path / "served-artifacts"), "--host", "127.0.0.1",
                  "--port", str(port), "--workers", "1"], tmp_path / "server.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", proc, tmp_path / "server.log")
        yield uri
    finally:
        stop(proc)


@pytest.mark.heavy
def test_server_registry_and_models_serve(mlflow_server, checkpoints, images, tmp_path):
    uri = mlflow_server
    r = register_checkpoint(checkpoints["good"], "tx", tracking_uri=uri)
    assert list((tmp_path / "served-artifacts").rglob("model.ckpt"))  # uploaded through the server
    from mlflow.tracking import MlflowClient

    MlflowClient(uri, uri).set_registered_model_alias("tx", "champion", r.version)
    local = resolve_checkpoint("models:/tx@champion", uri)
    assert local.read_bytes() == checkpoints["good"].read_bytes()

    port = free_port()
    serve = start([MLFLOW, "models", "serve", "-m", "models:/tx@champion", "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port), "-w", "1"], tmp_path / "serve.log",
                  env={"MLFLOW_TRACKING_URI": uri})
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", serve, tmp_path / "serve.log")
        image = sorted(images.glob("*.png"))[0]
        body = {"dataframe_split": {"columns": ["data"], "data": [[b64(image.read_bytes())]]},
                "params": {"mode": "compress"}}
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert answer.ok, answer.text
        row = answer.json()["predictions"][0]
        assert row["error"] == "" and row["width"] == 128
        assert base64.b64decode(row["data"]) == Codec.from_checkpoint(checkpoints["good"]).compress(image)
    finally:
        stop(serve)
