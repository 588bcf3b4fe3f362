"""Real Ray Train runs on a local Ray (2 CPUs): a short run read back through MLflow whose checkpoint
compresses and decompresses, a worker process killed with SIGKILL, and a driver killed and re-run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from PIL import Image

from texpress.codec.checkpoint import build_model, load_model, read_checkpoint, save_checkpoint
from texpress.codec.config import get_preset
from texpress.train import curves
from texpress.train.ray_driver import run_training

from .conftest import small_configs

pytestmark = pytest.mark.heavy

TRAIN_METRICS = ["train/bpp", "train/mse", "train/psnr", "train/loss_rd", "train/loss_g", "train/lambda"]
GAN_METRICS = ["train/loss_d", "train/d_real", "train/d_fake"]
VAL_METRICS = ["val/bpp", "val/psnr", "val/ms_ssim", "val/checkerboard", "val/texture_distance"]


def texpress(*args: str, env: dict | None = None, check_rc: int | None = 0, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd, timeout=400)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout + proc.stderr)[-3000:]
    return proc


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has committed (its checkpoint manager's snapshot)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return sorted(int(r["checkpoint_dir_name"].split("_")[1]) for r in snapshot["checkpoint_results"])


def mlflow_client(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{workdir.resolve()}/mlflow.db")


def only_run(client, experiment: str = "texpress"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_short_run_warm_start_mlflow_and_a_usable_checkpoint(local_ray, shards, tmp_path, monkeypatch):
    from texpress.data.manifest import dataset_version

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    init_model = build_model(get_preset("lite"), seed=123)
    save_checkpoint(init_model, tmp_path / "init.ckpt")
    cfg, loader_cfg = small_configs(storage_path=str(tmp_path / "ray"))
    outcome = run_training(cfg, loader_cfg, shards, tmp_path / "out", init_from=tmp_path / "init.ckpt")

    m = outcome.metrics
    assert m["step"] == 10 and m["world_size"] == 2 and m["resumed_from"] == []
    assert m["identical_models"], m["ranks"]
    assert [r["steps_run"] for r in m["ranks"]] == [10, 10]
    for key in ("val_bpp", "val_psnr", "val_ms_ssim", "train_bpp", "train_psnr"):
        assert math.isfinite(m[key]) and m[key] > 0, key

    # outputs: checkpoint, metrics JSON, curves TSV (finite losses for every step), PNGs
    saved = json.loads((tmp_path / "out" / "train_metrics.json").read_text())
    assert saved["val_bpp"] == pytest.approx(m["val_bpp"]) and saved["steps"] == 10
    history = curves.read_tsv(tmp_path / "out" / "train_curves.tsv")
    assert history["step"] == list(range(1, 11))
    assert all(math.isfinite(v) for k in curves.HISTORY_KEYS[1:] for v in history[k])
    assert sorted(p.name for p in (tmp_path / "out" / "curves").glob("*.png")) == [
        "distortion_loss.png", "rate_loss.png", "rd_loss.png"]

    # the model: warm-started from init.ckpt (10 small Adam steps away from it), entropy coder updated
    model = load_model(tmp_path / "out" / "model.ckpt")
    w, w0 = model.generator.rgb_conv.weight, init_model.generator.rgb_conv.weight
    assert 0 < (w - w0).abs().max() < 0.05
    assert (w - build_model(get_preset("lite"), seed=0).generator.rgb_conv.weight).abs().max() > 0.1
    assert model.entropy_bottleneck._quantized_cdf.numel() > 0

    # `texpress compress --model` uses it directly, and decompress restores the image
    from texpress.samples import sample_photos

    photo = sample_photos()[1]
    texpress("compress", str(photo), "-m", str(tmp_path / "out" / "model.ckpt"), "-o", str(tmp_path / "tpx"))
    tpx = list((tmp_path / "tpx").rglob("*.tpx"))
    assert len(tpx) == 1
    texpress("decompress", str(tpx[0]), "-m", str(tmp_path / "out" / "model.ckpt"), "-o", str(tmp_path / "png"))
    restored = list((tmp_path / "png").rglob("*.png"))
    with Image.open(photo) as a, Image.open(restored[0]) as b:
        assert a.size == b.size

    # MLflow, read back from the default store in the working directory
    client = mlflow_client(tmp_path)
    run = only_run(client)
    rid = run.info.run_id
    assert rid == outcome.mlflow_run_id and run.info.status == "FINISHED"
    assert run.data.params["train.preset"] == "lite" and run.data.params["world_size"] == "2"
    assert run.data.params["model.latent_channels"] == str(get_preset("lite").latent_channels)
    assert run.data.params["init_from"].endswith("init.ckpt")
    assert run.data.tags["data_version"] == dataset_version(shards)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    assert run.data.tags["git_commit"].startswith(head)
    # the checkpoint names no run or commit (the same training gives the same bytes); run.json does
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["mlflow_run_id"] == rid and record["git_commit"].startswith(head)
    assert not {"mlflow_run_id", "git_commit"} & set(read_checkpoint(outcome.model_path)["meta"])
    assert run.data.tags["model_fingerprint"] == read_checkpoint(outcome.model_path)["fingerprint"]
    for name in TRAIN_METRICS:
        assert sorted(x.step for x in client.get_metric_history(rid, name)) == list(range(1, 11)), name
    for name in GAN_METRICS:  # the adversarial phase: steps 7..10
        assert sorted(x.step for x in client.get_metric_history(rid, name)) == [7, 8, 9, 10], name
    for name in VAL_METRICS:
        hist = client.get_metric_history(rid, name)
        assert sorted(x.step for x in hist) == [5, 10] and all(math.isfinite(x.value) for x in hist), name
    assert all(math.isfinite(x.value) for x in client.get_metric_history(rid, "train/loss_g"))
    artifacts = {a.path for a in client.list_artifacts(rid)}
    assert {"curves", "model", "val", "train_metrics.json"} <= artifacts
    assert {a.path for a in client.list_artifacts(rid, "curves")} == {
        "curves/rate_loss.png", "curves/distortion_loss.png", "curves/rd_loss.png", "curves/train_curves.tsv"}
    assert {a.path for a in client.list_artifacts(rid, "model")} == {"model/model.ckpt"}
    assert {a.path for a in client.list_artifacts(rid, "val")} == {"val/grid_step0000005.png",
                                                                    "val/grid_step0000010.png"}
    local = Path(client.download_artifacts(rid, "model/model.ckpt", str(tmp_path / "dl")))
    assert load_model(local).state_dict().keys() == model.state_dict().keys()
    assert (tmp_path / "mlartifacts").is_dir()


def _train_workers_of(temp_dir: str) -> list[psutil.Process]:
    """Ray Train worker processes of the Ray whose session lives under temp_dir (not anybody else's)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "RayTrainWorker" not in cmd:
                continue
            parent = p.parent()
            if parent is not None and temp_dir in " ".join(parent.cmdline()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found, key=lambda p: p.pid)


def test_killed_worker_resumes_from_the_last_checkpoint(local_ray, shards, tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    temp_dir = ray._private.worker._global_node.get_temp_dir_path()
    every = 10
    cfg, loader_cfg = small_configs(rd_steps=40, gan_steps=20, checkpoint_every=every, val_every=30, log_every=1,
                                    storage_path=str(tmp_path / "ray"))
    run_dir = tmp_path / "ray" / "killed"
    client = mlflow_client(tmp_path)
    seen: dict = {}

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline and not checkpoint_steps(run_dir):
            time.sleep(0.2)
        exp = client.get_experiment_by_name("texpress")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        seen["logged_step"] = max((m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss_rd")),
                                  default=0) if runs else 0
        workers = _train_workers_of(temp_dir)
        seen["checkpoints"] = checkpoint_steps(run_dir)
        if workers:
            seen["pid"] = workers[-1].pid
            os.kill(workers[-1].pid, signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    outcome = run_training(cfg, loader_cfg, shards, tmp_path / "out", run_name="killed", tracking_dir=tmp_path)
    thread.join(timeout=5)
    assert "pid" in seen, f"no Ray Train worker found to kill: {seen}"
    assert not psutil.pid_exists(seen["pid"]) or psutil.Process(seen["pid"]).status() == psutil.STATUS_ZOMBIE

    m = outcome.metrics
    assert m["step"] == 60
    assert len(m["resumed_from"]) == 1, m["resumed_from"]
    resumed = m["resumed_from"][0]
    # restarted from the newest checkpoint there was: at most `every` steps were lost
    assert resumed % every == 0 and resumed >= max(seen["checkpoints"])
    assert resumed >= seen["logged_step"] - every
    assert m["identical_models"]
    assert [r["steps_run"] for r in m["ranks"]] == [60 - resumed] * 2
    history = curves.read_tsv(tmp_path / "out" / "train_curves.tsv")
    assert history["step"] == list(range(1, 61))  # one entry per step, none twice
    run = only_run(client)  # the same MLflow run went on after the restart
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_step"] == str(resumed)
    assert sorted({x.step for x in client.get_metric_history(run.info.run_id, "train/loss_rd")}) == list(range(1, 61))
    assert load_model(tmp_path / "out" / "model.ckpt") is not None


def test_rerun_after_the_driver_died_resumes_the_stored_run(local_ray, shards, tmp_path):
    """`texpress train` joins the running Ray (RAY_ADDRESS), is SIGKILLed after its first checkpoint,
    and the same command run again resumes that run (same default run name) to the end."""
    import ray

    params = tmp_path / "params.yaml"
    params.write_text(
        "train:\n  preset: lite\n  rd_steps: 30\n  gan_steps: 10\n  workers: 2\n  checkpoint_every: 8\n"
        "  val_every: 100\n  log_every: 4\n  val_images: 1\n  grid_images: 1\n"
        f"  storage_path: {tmp_path / 'ray'}\n"
        "loader:\n  patch_size: 64\n  batch_size: 2\n  num_workers: 1\n  batches_per_epoch: 10\n"
        "  val_max_side: 128\n")
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "texpress.cli", "train", "--shards", str(shards), "--params", str(params),
            "--steps", "40", "-o", str(tmp_path / "out")]
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(args, cwd=tmp_path, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:
            if any(checkpoint_steps(d) for d in (tmp_path / "ray").glob("*")):
                break
            time.sleep(0.2)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    runs = [d for d in (tmp_path / "ray").iterdir() if d.is_dir()]
    assert len(runs) == 1 and checkpoint_steps(runs[0])
    assert not (tmp_path / "out" / "model.ckpt").exists()

    second = texpress("train", "--shards", str(shards), "--params", str(params), "--steps", "40",
                      "-o", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert "resumed at step" in second.stdout, second.stdout
    for output in ((tmp_path / "first.log").read_text(), second.stdout + second.stderr):  # no Ray start-up noise
        assert "PreemptionWatcher" not in output and "Creating initial MLflow database" not in output, output
    assert [d.name for d in (tmp_path / "ray").iterdir() if d.is_dir()] == [runs[0].name]  # the same run
    assert (runs[0] / ".texpress-complete").is_file()
    saved = json.loads((tmp_path / "out" / "train_metrics.json").read_text())
    assert saved["steps"] == 40 and math.isfinite(saved["val_psnr"])
    history = curves.read_tsv(tmp_path / "out" / "train_curves.tsv")
    assert history["step"] == list(range(1, 41))
    client = mlflow_client(tmp_path)
    run = only_run(client)
    assert run.info.status == "FINISHED" and int(run.data.tags["resumed_from_step"]) >= 8
    assert torch.isfinite(load_model(tmp_path / "out" / "model.ckpt").generator.rgb_conv.weight).all()


def test_a_run_that_fails_for_good_ends_failed_in_mlflow(local_ray, shards, tmp_path, monkeypatch):
    """lr 1e30 diverges at step 2; with max_failures=0 that is final: TrainingError, and the MLflow
    run (created by rank 0) ends FAILED with the reason as a tag."""
    from texpress.errors import TrainingError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, loader_cfg = small_configs(lr=1e30, rd_steps=6, gan_steps=0, workers=1, max_failures=0,
                                    storage_path=str(tmp_path / "ray"))
    with pytest.raises(TrainingError, match="non-finite"):
        run_training(cfg, loader_cfg, shards, tmp_path / "out", run_name="diverged", tracking_dir=tmp_path)
    run = only_run(mlflow_client(tmp_path))
    assert run.info.status == "FAILED", run.info
    assert "non-finite" in run.data.tags["failure_reason"] and run.data.tags["ray_run_name"] == "diverged"
    assert not (tmp_path / "out" / "model.ckpt").exists()
