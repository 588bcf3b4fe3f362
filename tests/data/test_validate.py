"""Validation: every rejection category from real broken files, and the pixel hash."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from texpress.data import validate as v
from texpress.data.split import assign_split, hash_fraction


def _check(data: bytes, min_side: int = 16, max_pixels: int = 10_000_000):
    return v.validate(data, min_side, max_pixels)


def _encode(arr: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt, **kw) if mode else Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_accepted_records_format_size_and_hash(make_image):
    r = _check(make_image(64, 48, seed=1))
    assert isinstance(r, v.Accepted)
    assert (r.width, r.height, r.ext, r.mode, r.exif_transpose) == (64, 48, "jpg", "RGB", False)
    assert len(r.sha256) == 64
    r = _check(make_image(40, 40, seed=1, fmt="PNG", mode="L"))
    assert (r.ext, r.mode) == ("png", "L")


def test_each_rejection_category(make_image):
    jpeg = make_image(64, 64, seed=2)
    png = make_image(64, 64, seed=2, fmt="PNG")
    cases = {
        v.EMPTY: b"",
        v.NOT_IMAGE: b"hello, I am a text file\n" * 10,
        v.CORRUPT: jpeg[: len(jpeg) // 2],
        v.TOO_SMALL: make_image(64, 8, seed=3),
        v.TOO_LARGE: make_image(200, 100, seed=4),
        v.BAD_MODE: _encode(np.zeros((32, 32), np.float32), "TIFF", "F"),
    }
    for reason, data in cases.items():
        r = _check(data, min_side=16, max_pixels=10_000 if reason == v.TOO_LARGE else 10_000_000)
        assert isinstance(r, v.Rejected), reason
        assert r.reason == reason, (reason, r.detail)
        assert r.detail and "\n" not in r.detail
    truncated_png = _check(png[:-40])
    assert isinstance(truncated_png, v.Rejected) and truncated_png.reason == v.CORRUPT


def test_same_pixels_same_hash_across_formats():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    png, bmp, tiff = (_encode(arr, f) for f in ("PNG", "BMP", "TIFF"))
    hashes = {_check(d).sha256 for d in (png, bmp, tiff)}
    assert len(hashes) == 1
    arr2 = arr.copy()
    arr2[0, 0, 0] ^= 1
    assert _check(_encode(arr2, "PNG")).sha256 not in hashes


def test_exif_orientation_is_applied_to_the_recorded_size(make_image):
    im = Image.open(io.BytesIO(make_image(80, 40, seed=5)))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    r = _check(buf.getvalue())
    assert (r.width, r.height, r.exif_transpose) == (40, 80, True)


def test_split_is_a_pure_function_of_the_hash():
    assert assign_split("0" * 64, 0.1, 0.1) == "test"
    assert assign_split("f" * 64, 0.1, 0.1) == "train"
    h = "1c" + "0" * 62  # 0x1c / 0x100 = 0.109
    assert 0.1 < hash_fraction(h) < 0.2 and assign_split(h, 0.1, 0.1) == "val"
    assert assign_split(h, 0.0, 0.0) == "train" and assign_split(h, 0.0, 1.0) == "test"
