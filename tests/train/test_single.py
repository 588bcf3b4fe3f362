"""The single-process trainer (`--backend torch`): a checkpoint `texpress compress` accepts, a resume
that ends with the same weights as an uninterrupted run, no Ray/MLflow/webdataset needed, and a
failed run that ends FAILED in MLflow with its reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from texpress.codec.checkpoint import load_model, read_checkpoint
from texpress.data.config import LoaderConfig
from texpress.errors import TrainingError
from texpress.train.checkpoints import CHECKPOINT_DIR, latest_checkpoint
from texpress.train.config import TrainConfig
from texpress.train.single_process import train_single

SRC = Path(__file__).resolve().parents[2] / "src"
BLOCKED = ("ray", "mlflow", "webdataset", "dvc", "prefect", "yaml", "typer", "rich", "matplotlib")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """(train folder, val folder) of sample photos."""
    from texpress.samples import sample_photos

    found = sample_photos()
    if len(found) < 5:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for p in found[:4]:
        shutil.copy(p, root / "train" / p.name)
    shutil.copy(found[4], root / "val" / found[4].name)
    return root / "train", root / "val"


def small(**changes) -> tuple[TrainConfig, LoaderConfig]:
    train = dict(preset="lite", rd_steps=4, gan_steps=2, checkpoint_every=2, val_every=100, log_every=3,
                 val_images=1, grid_images=1, keep_checkpoints=2)
    train.update(changes)
    return TrainConfig(**train), LoaderConfig(patch_size=64, batch_size=2, val_max_side=128)


def test_an_interrupted_run_resumes_to_the_same_weights(photos, tmp_path):
    """Stopped after its first step (a time limit of 0 s) and run again, the trainer ends with the
    weights, entropy-coder tables and loss curve of the uninterrupted run."""
    train, val = photos
    torch.set_num_threads(1)
    cfg, loader_cfg = small()
    whole = train_single(cfg, loader_cfg, tmp_path / "whole", images=train, val=val, device="cpu", mlflow=False)
    assert whole.step == 6 and not whole.stopped and whole.resumed_from == []
    assert not (tmp_path / "whole" / CHECKPOINT_DIR).exists()  # a finished run keeps no resume state

    first = train_single(cfg, loader_cfg, tmp_path / "split", images=train, val=val, device="cpu", mlflow=False,
                         time_limit=0)
    assert first.stopped and first.step == 1 and first.model_path is None
    assert latest_checkpoint(tmp_path / "split" / CHECKPOINT_DIR) == 1
    assert not (tmp_path / "split" / "model.ckpt").exists()
    second = train_single(cfg, loader_cfg, tmp_path / "split", images=train, val=val, device="cpu", mlflow=False)
    assert second.resumed_from == [1] and second.step == 6

    a, b = read_checkpoint(whole.model_path), read_checkpoint(second.model_path)
    assert a["fingerprint"] == b["fingerprint"]
    # byte for byte: the outputs a DVC stage declares hold no run id, commit or time (run.json does)
    for name in ("model.ckpt", "train_metrics.json", "train_curves.tsv"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "split" / name).read_bytes(), name
    assert whole.metrics["val_psnr"] == second.metrics["val_psnr"]
    # other settings: the checkpoints of this folder are not taken for the other run's
    first = train_single(cfg, loader_cfg, tmp_path / "other", images=train, device="cpu", mlflow=False,
                         time_limit=0)
    from texpress.errors import InputError

    with pytest.raises(InputError, match="checkpoints of a run with other settings"):
        train_single(cfg.replace(lr=1e-4), loader_cfg, tmp_path / "other", images=train, device="cpu", mlflow=False)


def test_a_warm_start_records_its_checkpoints_preset_not_train_preset(photos, tmp_path):
    """The architecture comes from the --from checkpoint, so does the preset in the new checkpoint."""
    from texpress.codec.checkpoint import build_model, save_checkpoint
    from texpress.codec.config import get_preset

    train, _ = photos
    torch.set_num_threads(1)
    save_checkpoint(build_model(get_preset("base").replace(train_quant="noise"), seed=0), tmp_path / "base.ckpt")
    cfg, loader_cfg = small(rd_steps=1, gan_steps=0)  # train.preset is lite
    done = train_single(cfg, loader_cfg, tmp_path / "out", images=train, init_from=tmp_path / "base.ckpt",
                        device="cpu", mlflow=False)
    assert read_checkpoint(done.model_path)["meta"]["preset"] == "base"


def _blocking_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a sitecustomize that makes every import of the BLOCKED packages fail."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED))
    return {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{SRC}", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.mark.heavy
def test_standalone_entry_without_ray_mlflow_or_webdataset(photos, tmp_path):
    """`python -m texpress.train` with ray, mlflow, webdataset, dvc, prefect, yaml, typer, rich
    and matplotlib unimportable (a bare GPU box); its model.ckpt works with `texpress compress`."""
    train, val = photos
    env = _blocking_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "ray" in probe.stderr  # the shim works
    out = tmp_path / "out"
    args = [sys.executable, "-m", "texpress.train", "--images", str(train), "--val", str(val), "-o", str(out),
            "--preset", "lite", "--steps", "3", "--gan-steps", "1", "--batch-size", "2", "--crop", "64",
            "--lambda", "0.01", "--warmup", "2", "--checkpoint-every", "2", "--device", "cpu"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "model " in proc.stdout and "Mpx/s" in proc.stdout and "validation" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.ckpt", "run.json", "train_curves.tsv", "train_metrics.json"]
    assert not (tmp_path / "mlflow.db").exists()
    assert load_model(out / "model.ckpt").entropy_bottleneck._quantized_cdf.numel() > 0

    from texpress.samples import sample_photos

    photo = sample_photos()[1]
    cli = [sys.executable, "-m", "texpress.cli"]
    full_env = {**os.environ, "COLUMNS": "200"}
    for cmd in (["compress", str(photo), "-m", str(out / "model.ckpt"), "-o", str(tmp_path / "tpx")],):
        done = subprocess.run(cli + cmd, env=full_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    tpx = list((tmp_path / "tpx").rglob("*.tpx"))
    done = subprocess.run(cli + ["decompress", str(tpx[0]), "-m", str(out / "model.ckpt"), "-o", str(tmp_path / "png")],
                          env=full_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with Image.open(photo) as a, Image.open(next((tmp_path / "png").rglob("*.png"))) as b:
        assert a.size == b.size


def test_a_diverged_run_ends_failed_in_mlflow_with_the_reason(photos, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train, _ = photos
    cfg, loader_cfg = small(lr=1e30, gan_steps=0)  # the first Adam step throws every weight to +-1e30
    with pytest.raises(TrainingError, match="non-finite"):
        train_single(cfg, loader_cfg, tmp_path / "out", images=train, device="cpu", tracking_dir=tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("texpress").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["failure_reason"] and run.data.tags["backend"] == "torch"
    assert not (tmp_path / "out" / "model.ckpt").exists()


def test_shards_and_mlflow_on_the_torch_backend(shards, tmp_path, monkeypatch):
    """The WebDataset shards (train and val splits) as data, logged to MLflow like a Ray run."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, loader_cfg = small(rd_steps=3, gan_steps=1, log_every=2, val_every=2)
    loader_cfg = loader_cfg.replace(num_workers=0, batches_per_epoch=5)
    o = train_single(cfg, loader_cfg, tmp_path / "out", shards=str(shards), device="cpu", tracking_dir=tmp_path)
    assert o.step == 4 and o.model_path.is_file() and o.throughput["steps_per_s"] > 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(o.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "torch"
    assert run.data.params["train.preset"] == "lite" and run.data.params["world_size"] == "1"
    assert sorted(m.step for m in client.get_metric_history(o.mlflow_run_id, "train/loss_rd")) == [1, 2, 3, 4]
    assert sorted(m.step for m in client.get_metric_history(o.mlflow_run_id, "val/psnr")) == [2, 4]
    assert {a.path for a in client.list_artifacts(o.mlflow_run_id, "model")} == {"model/model.ckpt"}
    # the model names no run (same training, same bytes); run.json beside it and the run's tag link them
    fp = read_checkpoint(o.model_path)["fingerprint"]
    assert "mlflow_run_id" not in read_checkpoint(o.model_path)["meta"] and run.data.tags["model_fingerprint"] == fp
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["mlflow_run_id"] == o.mlflow_run_id and record["model_fingerprint"] == fp
