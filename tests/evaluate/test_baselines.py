"""Every classical baseline really encodes and decodes here, and its quality knob trades rate for fidelity."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from texpress.evaluate.baselines import BASELINES, BaselineError, get_baseline
from texpress.evaluate.metrics import bpp, psnr


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_roundtrip_and_rate_grows_with_quality(name, small_crop):
    b = BASELINES[name]
    h, w = small_crop.shape[:2]
    qualities = b.default_qualities
    lo, hi = qualities[0], qualities[-1]
    results = []
    for q in (lo, hi):
        data = b.encode(small_crop, q)
        assert isinstance(data, bytes) and len(data) > 0
        rec = b.decode(data)
        assert rec.shape == small_crop.shape and rec.dtype == np.uint8
        results.append((bpp(len(data), w, h), psnr(small_crop, rec)))
    (r_lo, p_lo), (r_hi, p_hi) = results
    assert r_lo < r_hi, f"{name}: rate does not grow from {lo} to {hi}"
    assert p_lo < p_hi, f"{name}: PSNR does not grow from {lo} to {hi}"
    assert 10 < p_lo and p_hi < 60


# the lowest setting each codec accepts: a sweep that starts there reaches as low a rate as the codec can
LOWEST = {"jpeg": 1, "webp": 0, "avif": 0, "jpeg2000": 1000, "heic": 0, "jxl": 25}


def test_every_sweep_starts_at_its_codecs_lowest_setting():
    assert {n: b.default_qualities[0] for n, b in BASELINES.items()} == LOWEST


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_settings_are_recorded(name):
    d = BASELINES[name].describe()
    assert d["library"] and d["library"] != "unavailable"
    assert d["chroma"] in ("4:4:4", "4:2:0")
    assert d["quality_name"]


def test_chroma_is_444_where_the_codec_allows():
    assert {n for n, b in BASELINES.items() if b.chroma != "4:4:4"} == {"webp"}  # lossy WebP (VP8) is 4:2:0 only


def test_jpeg_really_is_444(small_crop):
    data = BASELINES["jpeg"].encode(small_crop, 50)
    with Image.open(io.BytesIO(data)) as im:
        assert [s[1:3] for s in im.layer] == [(1, 1)] * 3  # no component is subsampled


def test_heic_really_is_444(small_crop):
    import pillow_heif

    data = BASELINES["heic"].encode(small_crop, 50)
    assert pillow_heif.open_heif(io.BytesIO(data)).info["chroma"] == 444


def test_jpeg2000_hits_its_target_ratio(small_crop):
    h, w = small_crop.shape[:2]
    data = BASELINES["jpeg2000"].encode(small_crop, 48)  # 24 bpp / 48 = 0.5 bpp
    assert bpp(len(data), w, h) == pytest.approx(0.5, rel=0.15)


def test_garbage_bytes_fail_with_a_one_line_error():
    for name in BASELINES:
        with pytest.raises(BaselineError) as info:
            BASELINES[name].decode(b"not an image at all")
        assert "\n" not in str(info.value)


def test_unknown_baseline():
    with pytest.raises(BaselineError, match="unknown baseline"):
        get_baseline("bpg")


def test_library_versions_name_every_codec_library():
    from texpress.evaluate.baselines import library_versions

    libs = library_versions()
    for name in ("Pillow", "libjpeg-turbo", "libwebp", "libavif", "openjpeg", "pillow-heif", "libheif",
                 "imagecodecs", "libjxl", "torch", "compressai"):
        assert libs[name] and libs[name] != "unavailable", name
