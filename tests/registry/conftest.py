"""Fixtures of the registry tests: a briefly trained lite checkpoint and a deliberately damaged copy
(noise of 1.5 std on every generator weight: same bitstream, worse pictures), small photo crops, a real MLflow sqlite
store per test, and the `texpress` command run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texpress.codec.checkpoint import build_model, load_model, save_checkpoint
from texpress.codec.config import get_preset
from texpress.codec.imageio import load_image
from texpress.registry.config import GateConfig, RegistryConfig
from texpress.samples import sample_photos


def centre(rgb: np.ndarray, side: int) -> np.ndarray:
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    return np.ascontiguousarray(rgb[top: top + side, left: left + side])


def briefly_train(steps: int = 200, seed: int = 0) -> torch.nn.Module:
    """A lite model after `steps` steps of the A/B harness's rate + MSE training (lambda 0.01) on
    64 px crops of the sample photos (about 15 s on one core): far from good, but clearly better
    than its damaged copy. GDN needs the warm-up and a moderate learning rate from a cold start."""
    from texpress.train.ab.fit import FitSettings, device_crops, fit

    settings = FitSettings(steps=steps, batch=4, crop=64, lr=3e-4, warmup=10, decay_at=1.0, seed=seed)
    crops = device_crops([load_image(p).rgb for p in sample_photos()[:6]], settings)
    model = build_model(get_preset("lite"), seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(model, 0.01, crops, settings)
    finally:
        torch.set_num_threads(threads)
    return model


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """good: briefly trained; damaged: the same with noise on every generator weight; untrained: init."""
    d = tmp_path_factory.mktemp("registry-models")
    model = briefly_train()
    good = d / "good.ckpt"
    save_checkpoint(model, good, meta={"preset": "lite", "steps": 200, "mlflow_run_id": ""})
    damaged = load_model(good)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in damaged.generator.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std() * 1.5)
    save_checkpoint(damaged, d / "damaged.ckpt", meta={"preset": "lite", "damaged": True})
    save_checkpoint(build_model(get_preset("lite"), seed=3), d / "untrained.ckpt", meta={"preset": "lite"})
    return {"good": good, "damaged": d / "damaged.ckpt", "untrained": d / "untrained.ckpt"}


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """Two 128 px crops of sample photos: the gate's evaluation set."""
    d = tmp_path_factory.mktemp("registry-images")
    photos = {p.stem: p for p in sample_photos()}
    for name in ("astronaut", "coffee"):
        Image.fromarray(centre(load_image(photos[name]).rgb, 128)).save(d / f"{name}.png")
    return d


@pytest.fixture()
def store(tmp_path, monkeypatch) -> str:
    """A fresh sqlite store (artifacts beside it) and a fresh download cache; returns the tracking URI."""
    monkeypatch.setenv("TEXPRESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture()
def gate_cfg(images) -> RegistryConfig:
    """The gate on the test images: quality decides (texture and speed tolerances wide: an 80-step model
    and its noisy copy differ in texture statistics either way, and timings on a shared machine are noisy;
    test_gate.py holds those rules to account on their own). No champion: PSNR of at least 10 dB."""
    return RegistryConfig(images=(str(images),), gate=GateConfig(
        texture_tolerance=0.5, checkerboard_tolerance=50.0, speed_tolerance=3.0, speed_repeats=1,
        floor_max_rate_delta=None, floor_min_psnr=10.0))


def texpress(*args: str, check_rc: int | None = 0, env: dict | None = None,
             cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc
