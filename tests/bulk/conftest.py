"""Shared set-up of the bulk tests: a local Ray started once per module, an untrained lite
checkpoint, and stores of small generated photos mixed with bad files."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


BAD_FILES = {"broken/truncated.jpg": "corrupt", "broken/empty.png": "empty", "notes.txt": "not_image",
             "broken/fake.png": "not_image", "broken/big.png": "too_large"}
MAX_PIXELS = 10_000  # the photos have at most 96 x 80 pixels; broken/big.png has 40,000


def photo(seed: int, fmt: str = "JPEG") -> bytes:
    """A smooth random photo-like image, 48 to 96 pixels a side."""
    rng = np.random.default_rng(seed)
    w, h = 48 + 8 * (seed % 7), 48 + 8 * (seed % 5)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(small, "RGB").resize((w, h), Image.BILINEAR)
    if seed % 11 == 0:
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_store(root: Path, n: int, bad: bool = True) -> dict[str, bytes]:
    """n photos in nested folders (plus the BAD_FILES); returns relative path -> bytes of the photos."""
    photos = {}
    for i in range(n):
        rel = f"{'cams/' + str(i % 3) + '/' if i % 2 else ''}img{i:04d}.{'png' if i % 4 == 0 else 'jpg'}"
        photos[rel] = photo(i, "PNG" if i % 4 == 0 else "JPEG")
    files = dict(photos)
    if bad:
        files.update({"broken/truncated.jpg": photo(999)[:200], "broken/empty.png": b"",
                      "notes.txt": b"not an image", "broken/fake.png": b"\x89PNG but not really",
                      "broken/big.png": _png(Image.new("RGB", (200, 200), (90, 120, 30)))})
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return photos


def tree(root: Path, skip: tuple[str, ...] = ("bulk.json", "report.json")) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root (the run's report and settings excluded)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}


def zip_of(files: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for the module; run_bulk uses it instead of starting its own."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="txb-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp,
                 logging_config=ray.LoggingConfig(log_level="ERROR"),
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning"}})
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
