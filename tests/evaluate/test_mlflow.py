"""Given an MLflow run, an evaluation logs the same numbers and figures to it (real sqlite store)."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.run import run_eval
from texpress.evaluate.tracking import TrackingError, log_to_run


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("eval-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    return {"uri": uri, "client": client, "run_id": run.info.run_id, "tmp": tmp_path}


def test_evaluation_is_logged_to_the_run(store, crop_files, ckpt_pair):
    out = store["tmp"] / "out"
    cfg = EvalConfig(baselines=("jpeg", "webp"), qualities={"jpeg": (10, 50, 90), "webp": (10, 50, 90)})
    outcome = run_eval([str(crop_files[0]), str(crop_files[1])], [ModelSpec.parse(str(p)) for p in ckpt_pair], cfg,
                       out, mlflow_run_id=store["run_id"], tracking_uri=store["uri"])
    assert outcome.mlflow_uri == store["uri"]
    client = store["client"]
    run = client.get_run(store["run_id"])
    metrics = run.data.metrics
    summary = json.loads((out / "summary.json").read_text())
    # latest value of each key is the last point of the curve; the history holds every point
    jpeg = summary["curves"]["jpeg"]["points"]
    assert metrics["eval/jpeg/psnr-rgb"] == pytest.approx(jpeg[-1]["psnr-rgb"])
    history = client.get_metric_history(store["run_id"], "eval/jpeg/bpp")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([p["bpp"] for p in jpeg])
    assert metrics["eval/images"] == 2
    for m in ("checkerboard", "texture-distance", "hf-ratio"):
        assert f"eval/texpress/{m}" in metrics
    assert run.data.tags["eval.baselines"] == "jpeg,webp"
    assert run.data.tags["eval.models"] == "texpress"
    # the libraries behind the baselines' bytes are recorded with the numbers they made
    assert summary["libraries"]["libwebp"] == run.data.tags["eval.library.libwebp"] != "unavailable"
    assert run.data.tags["eval.library.Pillow"] == summary["libraries"]["Pillow"]
    # BD-rates are logged when they exist (untrained models do not overlap the baselines: none here)
    for key, value in metrics.items():
        if key.startswith("eval/bd_rate/"):
            model_base, metric = key.split("/")[2:4]
            assert value == pytest.approx(summary["bd_rate"]["texpress"][model_base.split("_vs_")[1]][metric])
    artifacts = {a.path for a in client.list_artifacts(store["run_id"], "eval")}
    assert {"eval/summary.json", "eval/metrics.json", "eval/per_image.csv", "eval/rd_psnr.png", "eval/rd_msssim.png",
            "eval/texture.png", "eval/crops.png", "eval/curves"} <= artifacts
    local = client.download_artifacts(store["run_id"], "eval/summary.json", str(store["tmp"] / "dl"))
    assert json.loads(open(local).read())["curves"].keys() == summary["curves"].keys()


def test_bd_rates_reach_mlflow(store):
    """A summary with a BD-rate value logs it under eval/bd_rate/<model>_vs_<baseline>/<metric>."""
    summary = {"images": {"count": 1},
               "curves": {"m": {"kind": "model", "points": [{"bpp": 0.5, "psnr-rgb": 30.0}]},
                          "jpeg": {"kind": "baseline", "points": []}},
               "bd_rate": {"m": {"jpeg": {"psnr-rgb": -12.5, "ms-ssim-rgb": None}}},
               "rate_delta": {"m": {"jpeg": {"psnr-rgb": [-10.0], "ms-ssim-rgb": [None]}}}}
    (store["tmp"] / "o").mkdir()
    (store["tmp"] / "o" / "summary.json").write_text(json.dumps(summary))
    log_to_run(store["run_id"], summary, store["tmp"] / "o", store["uri"])
    metrics = store["client"].get_run(store["run_id"]).data.metrics
    assert metrics["eval/bd_rate/m_vs_jpeg/psnr-rgb"] == -12.5
    assert "eval/bd_rate/m_vs_jpeg/ms-ssim-rgb" not in metrics
    assert metrics["eval/rate_delta/m_vs_jpeg/psnr-rgb"] == -10.0


def test_an_unknown_run_is_a_one_line_error(store, tmp_path):
    with pytest.raises(TrackingError, match="not found") as info:
        log_to_run("0" * 32, {"images": {"count": 0}, "curves": {}, "bd_rate": {}, "rate_delta": {}}, tmp_path,
                   store["uri"])
    assert "\n" not in str(info.value)


def test_default_store_follows_the_environment(monkeypatch, tmp_path):
    from texpress.mlstore import default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert mlflow.get_tracking_uri()  # importing mlflow did not need a server
