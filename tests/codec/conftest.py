from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texpress.codec.checkpoint import build_model, save_checkpoint
from texpress.codec.config import get_preset
from texpress.samples import sample_photos


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    paths = sample_photos()
    assert len(paths) >= 8, "scikit-image / scikit-learn sample photos are missing"
    return paths


@pytest.fixture(scope="session")
def other_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "lite-seed1.ckpt"
    save_checkpoint(build_model(get_preset("lite"), seed=1), path)
    return path


def crop(path: Path, w: int, h: int, mode: str = "RGB") -> Image.Image:
    im = Image.open(path).convert(mode)
    return im.crop((0, 0, min(w, im.width), min(h, im.height)))


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im)
