"""The checkerboard context and the variable-rate gains: bit-exact coding, tiles, the quality knob."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from texpress.codec import bitstream
from texpress.codec.api import Codec
from texpress.codec.checkpoint import build_model, read_checkpoint, transplant
from texpress.codec.complexity import measure
from texpress.codec.config import ModelConfig, get_preset
from texpress.codec.gain import check_quality
from texpress.codec.shipped import by_name
from texpress.errors import BitstreamError, ConfigError

from .conftest import crop, pixels

RATES = (2.4, 0.6, 0.15)


def warm_codec(entropy: str, rates: tuple[float, ...] = ()) -> Codec:
    """lite-q1's transforms under another entropy model (the context starts as a small perturbation
    of the hyperprior, so that its second pass really changes the parameters)."""
    model = build_model(get_preset("lite").replace(entropy=entropy, rate_lambdas=rates), seed=0)
    transplant(model, read_checkpoint(by_name("lite-q1").path)["state_dict"])
    if model.has_context:
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.context.refine[-1].parameters():
                p.normal_(0.0, 0.02)
    model.eval().update(force=True)
    return Codec(model)


@pytest.fixture(scope="module", params=[("checkerboard", ()), ("hyperprior", RATES), ("checkerboard", RATES)],
                ids=["checkerboard", "hyperprior-vr", "checkerboard-vr"])
def coder(request) -> Codec:
    return warm_codec(*request.param)


def test_round_trip_is_bit_exact_untiled(coder, photos):
    image = crop(photos[0], 200, 136)
    for quality in ([None] if not coder.config.variable_rate else [0.0, 62.5, 100.0]):
        data = coder.compress(image, quality=quality)
        header = bitstream.read_header(data)
        assert (header.version, header.passes, header.quality, header.effort) == \
            (4, 2 if coder.model.has_context else 1, quality, 0)
        assert np.array_equal(pixels(coder.decompress(data)), pixels(coder.reconstruct(image, quality=quality)))


def test_tiles_keep_their_context_inside(coder, photos):
    """Each tile codes and decodes on its own: the tiled file decodes the same way every time and
    stays as good as the untiled one."""
    image = crop(photos[1], 256, 192)
    loaded = coder.load(image)
    quality = 50.0 if coder.config.variable_rate else None
    tiled = coder.encode(loaded, tile=64, quality=quality)
    assert bitstream.read_header(tiled).tiles == 12
    a, b = pixels(coder.decompress(tiled)), pixels(coder.decompress(tiled))
    assert np.array_equal(a, b)
    whole = pixels(coder.decompress(coder.encode(loaded, quality=quality))).astype(float)
    ref = pixels(image).astype(float)
    psnr = lambda x: 10 * math.log10(255**2 / np.mean((x - ref) ** 2))  # noqa: E731
    assert abs(psnr(a.astype(float)) - psnr(whole)) < 0.5


def test_the_context_is_counted_in_the_decoder_cost():
    """models list counts the context conv and its 1x1 refinement on both sides."""
    hyper, ctx = warm_codec("hyperprior"), warm_codec("checkerboard")
    complexity = measure(ctx.model)
    assert 0 < complexity.context_kmac_per_px < 0.25 * measure(hyper.model).decoder_kmac_per_px


def test_variable_rate_bpp_rises_with_quality(photos):
    coder = warm_codec("checkerboard", RATES)
    image = crop(photos[2], 256, 256)
    sizes = [len(coder.compress(image, quality=q)) for q in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] * 0.7, sizes


def test_quality_is_checked():
    for bad in (-1, 100.5, float("nan"), "abc", None):
        with pytest.raises(ConfigError):
            check_quality(bad)
    assert check_quality(37.123) == pytest.approx(37.12)
    single = warm_codec("hyperprior")
    with pytest.raises(ConfigError, match="single rate"):
        single.compress(np.zeros((64, 64, 3), np.uint8), quality=50)


def test_single_rate_hyperprior_files_have_format_4_too(codec, photos):
    data = codec.compress(crop(photos[0], 128, 128))
    header = bitstream.read_header(data)
    assert (header.version, header.passes, header.quality, header.effort) == (4, 1, None, 0)


def test_a_crafted_version_4_header_is_refused(photos):
    coder = warm_codec("checkerboard", RATES)
    data = bytearray(coder.compress(crop(photos[0], 128, 128), quality=10))
    quality_at = 4 + 1 + 1 + 2 + 16 + 4 * 4
    for offset, value in ((quality_at, struct.pack("<H", 10001)), (quality_at + 2, b"\x03")):
        bad = bytearray(data)
        bad[offset:offset + len(value)] = value
        with pytest.raises(BitstreamError):
            coder.decompress(bytes(bad))
    single = bytearray(data)  # a variable-rate file without a quality
    single[quality_at:quality_at + 2] = struct.pack("<H", bitstream.NO_QUALITY)
    body = bytes(single[:-4])
    import zlib

    with pytest.raises(BitstreamError, match="quality"):
        coder.decompress(body + struct.pack("<I", zlib.crc32(body)))


def test_config_rejects_bad_rates_and_entropy():
    with pytest.raises(ConfigError):
        ModelConfig(rate_lambdas=(0.5,))
    with pytest.raises(ConfigError):
        ModelConfig(rate_lambdas=(0.5, 1.0))
    with pytest.raises(ConfigError):
        ModelConfig(entropy="autoregressive")
    assert ModelConfig.from_dict(get_preset("lite-vr").to_dict()) == get_preset("lite-vr")


@pytest.fixture(scope="module")
def vr_ckpt(tmp_path_factory):
    from texpress.codec.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("vr") / "vr.ckpt"
    save_checkpoint(warm_codec("checkerboard", RATES).model, path)
    return path


@pytest.mark.parametrize("argv, fragment", [
    (["--quality", "abc"], "quality must be a number"),
    (["--quality", "-3"], "quality must be from 0 to 100"),
    (["--effort", "4"], "effort must be a whole number from 0 to 3"),
])
def test_compress_checks_quality_and_effort_before_any_work(vr_ckpt, tmp_path, monkeypatch, capsys, argv, fragment):
    import sys

    from texpress.cli import main

    monkeypatch.setattr(sys, "argv", ["texpress", "compress", str(vr_ckpt), "-o", str(tmp_path / "out"),
                                      "-m", str(vr_ckpt), *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "out").exists()


def test_compress_and_decompress_at_a_quality(vr_ckpt, photos, tmp_path, monkeypatch):
    import sys

    from PIL import Image

    from texpress.cli import main

    crop(photos[0], 128, 96).save(tmp_path / "a.png")
    for q in ("10", "90"):
        monkeypatch.setattr(sys, "argv", ["texpress", "compress", str(tmp_path / "a.png"), "-o", str(tmp_path / q),
                                          "-m", str(vr_ckpt), "--quality", q])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code in (0, None)
    low, high = (tmp_path / q / "a.tpx" for q in ("10", "90"))
    assert bitstream.read_header(low.read_bytes()).quality == 10.0
    assert low.stat().st_size < high.stat().st_size
    monkeypatch.setattr(sys, "argv", ["texpress", "decompress", str(high), "-o", str(tmp_path / "png"),
                                      "-m", str(vr_ckpt)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert Image.open(tmp_path / "png" / "a.png").size == (128, 96)
