"""MLflow logging against a real sqlite store, the curve files, validation, run naming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from texpress.mlstore import ensure_experiment, resolve_tracking
from texpress.train import curves
from texpress.train.tracking import RunLogger, flatten_params


def test_default_store_is_sqlite_in_the_working_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, artifacts = resolve_tracking(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert artifacts == (tmp_path.resolve() / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking(tmp_path) == ("http://127.0.0.1:5000", None)


def test_run_logger_round_trip(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, artifacts = resolve_tracking(tmp_path)
    exp = ensure_experiment(uri, "t", artifacts)
    assert ensure_experiment(uri, "t", artifacts) == exp
    params = flatten_params("train.", {"lr": 0.1, "nested": {"a": 1}})
    assert params == {"train.lr": "0.1", "train.nested.a": "1"}
    log = RunLogger.start(uri, exp, run_name="r", params=params, tags={"data_version": "abc", "skip": None})
    for step in range(1, 2501):  # more than one log_batch
        log.log_metrics({"train/bpp": 1.0 / step}, step)
    log.flush()
    log.log_image(np.zeros((8, 16, 3), dtype=np.uint8), "val/grid.png")
    log.finish()
    client = MlflowClient(uri)
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == params and run.data.tags["data_version"] == "abc"
    hist = client.get_metric_history(log.run_id, "train/bpp")
    assert sorted(m.step for m in hist) == list(range(1, 2501))
    assert [a.path for a in client.list_artifacts(log.run_id, "val")] == ["val/grid.png"]
    assert (tmp_path / "mlartifacts").is_dir()


def test_curves_tsv_and_pngs(tmp_path):
    history = curves.empty_history()
    for step in range(1, 41):
        curves.append(history, step, {"bpp": 1.0 / step, "rate_loss": 2.0 / step, "distortion": 10.0 / step,
                                      "loss_rd": 12.0 / step})
    path = curves.write_tsv(history, tmp_path / "c.tsv")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["step", "bpp", "rate_loss", "distortion_loss", "rd_loss"]
    assert len(lines) == 41
    back = curves.read_tsv(path)
    assert back["step"] == list(range(1, 41))
    assert back["rd_loss"][9] == pytest.approx(1.2)
    assert curves.truncate(history, 10)["step"] == list(range(1, 11))
    pngs = curves.plot_curves(history, tmp_path / "png", rd_steps=30, target_bpp=0.3)
    assert [p.name for p in pngs] == ["rate_loss.png", "distortion_loss.png", "rd_loss.png"]
    for p in pngs:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 300


def test_validate_likelihoods_and_real_bitstream_agree():
    from texpress.codec.checkpoint import build_model
    from texpress.codec.config import get_preset
    from texpress.samples import sample_photos
    from texpress.train.validation import image_grid, validate

    model = build_model(get_preset("lite"), seed=0)
    model.update(force=True)
    with Image.open(sample_photos()[0]) as im:
        arr = np.asarray(im.convert("RGB"))[:130, :150]  # not a multiple of 64: padded and cropped
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    est, pairs = validate(model, [("a", x)], grid_images=1)
    real, _ = validate(model, [("a", x)], bitstream=True)
    assert est["images"] == real["images"] == 1
    assert real["bpp"] == pytest.approx(est["bpp"], rel=0.25)  # entropy coding is close to the estimate
    assert real["psnr"] == pytest.approx(est["psnr"], abs=0.05)  # same quantized latents, same decoder
    assert math.isfinite(real["ms_ssim"])
    assert real["checkerboard"] >= 0 and 0 <= real["texture_distance"] <= 1
    grid = image_grid(pairs)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and grid.shape[1] > grid.shape[0]


def test_run_names_resume_unfinished_and_skip_finished(tmp_path):
    from texpress.data.config import LoaderConfig
    from texpress.errors import TrainingError
    from texpress.train.config import TrainConfig
    from texpress.train.identity import run_identity
    from texpress.train.ray_driver import choose_run_name, mark_complete

    storage = str(tmp_path)
    a = run_identity(TrainConfig(), LoaderConfig(), "v1", None, shards="/d")
    assert a == run_identity(TrainConfig(max_failures=5, storage_path="x", checkpoint_every=7), LoaderConfig(), "v1",
                             None, shards="/d")
    assert a != run_identity(TrainConfig(), LoaderConfig(), "v2", None, shards="/d")
    assert a != run_identity(TrainConfig(lr=1e-3), LoaderConfig(), "v1", None, shards="/d")
    assert a != run_identity(TrainConfig(), LoaderConfig(), "v1", None, shards="/d", amp=True)
    assert choose_run_name(storage, "r", explicit=False) == "r"
    (tmp_path / "r").mkdir()
    assert choose_run_name(storage, "r", explicit=False) == "r"  # unfinished: resume it
    mark_complete(storage, "r", {})
    assert choose_run_name(storage, "r", explicit=False) == "r-2"
    (tmp_path / "r-2").mkdir()
    mark_complete(storage, "r-2", {})
    assert choose_run_name(storage, "r", explicit=False) == "r-3"
    with pytest.raises(TrainingError, match="already finished"):
        choose_run_name(storage, "r", explicit=True)
