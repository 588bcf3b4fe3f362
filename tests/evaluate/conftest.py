"""Fixtures of the evaluation tests: real sample photos (small crops), untrained lite checkpoints,
and the published Kodak R-D points copied into fixtures/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texpress.codec.checkpoint import build_model, save_checkpoint
from texpress.codec.config import get_preset
from texpress.codec.imageio import load_image
from texpress.samples import sample_photos

FIXTURES = Path(__file__).parent / "fixtures"


def centre(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top: top + h, left: left + w])


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    paths = sample_photos()
    assert len(paths) >= 9, "scikit-image / scikit-learn sample photos are missing"
    return paths


@pytest.fixture(scope="session")
def photo_by_name(photos):
    return {p.stem: p for p in photos}


@pytest.fixture(scope="session")
def clean_crops(photo_by_name) -> dict[str, np.ndarray]:
    """256x256 centre crops of losslessly stored photos (PNG: no JPEG blocking in the original)."""
    names = ["astronaut", "chelsea", "coffee", "motorcycle_left", "brick", "grass", "gravel"]
    return {n: centre(load_image(photo_by_name[n]).rgb, 256, 256) for n in names}


@pytest.fixture(scope="session")
def small_crop(photo_by_name) -> np.ndarray:
    return centre(load_image(photo_by_name["astronaut"]).rgb, 192, 160)


@pytest.fixture(scope="session")
def crop_files(tmp_path_factory, photo_by_name) -> list[Path]:
    """Three small PNG crops of sample photos on disk (fast CLI runs)."""
    d = tmp_path_factory.mktemp("images")
    out = []
    for name in ("astronaut", "coffee", "gravel"):
        path = d / f"{name}.png"
        Image.fromarray(centre(load_image(photo_by_name[name]).rgb, 160, 128)).save(path)
        out.append(path)
    return out


@pytest.fixture(scope="session")
def ckpt_pair(tmp_path_factory) -> list[Path]:
    """Two untrained lite checkpoints (different seeds: two points of one model curve)."""
    d = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (0, 1):
        path = d / f"lite-seed{seed}.ckpt"
        save_checkpoint(build_model(get_preset("lite"), seed=seed), path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def kodak() -> dict[str, dict]:
    """Published CompressAI Kodak curves: bmshj2018-hyperprior (MSE), JPEG, WebP, VTM."""
    return {p.stem.removeprefix("kodak-"): json.loads(p.read_text()) for p in FIXTURES.glob("kodak-*.json")}
