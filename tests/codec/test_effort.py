"""Encode effort (codec.refine): files made at effort > 0 decode with the unchanged decoder and model,
their bytes are reproducible across runs, processes and thread counts, they cost less in the model's
own rate-distortion loss than effort 0's, and bad effort values stop before any work."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from texpress.codec import bitstream, refine
from texpress.codec.api import Codec
from texpress.codec.shipped import by_name
from texpress.errors import ConfigError

from .conftest import crop, pixels
from .test_cli import texpress

SHIPPED = "lite-q1"
VR = "lite-vr"  # the shipped default: checkerboard context and variable rate
VR_QUALITY = 100.0  # on these small crops the search gains most at the top quality (docs/effort.md)


@pytest.fixture(scope="module")
def shipped() -> Codec:
    model = by_name(SHIPPED)
    if model is None:
        pytest.skip("no shipped models in this checkout")
    return Codec.from_checkpoint(model.path)


@pytest.fixture(scope="module")
def image(photos):
    return np.ascontiguousarray(pixels(crop(photos[0], 192, 128)))


@pytest.fixture(scope="module")
def shipped_vr() -> Codec:
    model = by_name(VR)
    if model is None:
        pytest.skip("no shipped models in this checkout")
    return Codec.from_checkpoint(model.path)


def rd_loss(codec: Codec, rgb: np.ndarray, data: bytes) -> float:
    """The objective refinement minimises, measured for real: lambda * bpp (from the bytes) + k_m * MSE
    (a variable-rate model's lambda is that of the file's quality)."""
    objective = codec.objective(quality=bitstream.read_header(data).quality)
    rec = pixels(codec.decompress(data).convert("RGB")).astype(np.float64)
    bpp = 8.0 * len(data) / (rgb.shape[0] * rgb.shape[1])
    return objective.lam * bpp + objective.k_m * float(np.mean((rec - rgb) ** 2))


def test_effort_files_decode_with_the_unchanged_decoder_and_cost_less(shipped, image):
    plain, refined = shipped.compress(image), shipped.compress(image, effort=2)
    assert refined != plain
    header = bitstream.unpack(refined).header
    assert (header.fingerprint, header.version, header.width, header.height, header.effort) == \
        (shipped.fingerprint, bitstream.FORMAT_VERSION, 192, 128, 2)
    fresh = Codec.from_checkpoint(by_name(SHIPPED).path)  # a decoder that never saw the encode
    assert np.array_equal(pixels(fresh.decompress(refined)), pixels(shipped.decompress(refined)))
    assert rd_loss(shipped, image, refined) < rd_loss(shipped, image, plain)


def test_refined_pieces_join_without_seams_and_tiled_files_decode(shipped, photos):
    """Two refinement pieces (512 + 128 px wide) and a tiled bitstream (128-px tiles)."""
    wide = next(p for p in photos if p.name.startswith("motorcycle"))
    rgb = np.ascontiguousarray(pixels(crop(wide, 640, 128)))
    assert len(refine.pieces((128 // 16, 640 // 16), 0)) == 2
    plain = shipped.compress(rgb)
    refined = shipped.encode(shipped.load(rgb), effort=1)
    tiled = shipped.encode(shipped.load(rgb), tile=128, effort=1)
    assert bitstream.unpack(tiled).header.tiles == 5
    assert rd_loss(shipped, rgb, refined) < rd_loss(shipped, rgb, plain)
    assert rd_loss(shipped, rgb, tiled) < rd_loss(shipped, rgb, plain)
    # no seam: along the piece border (x = 512) the error is no worse than effort 0's there
    def column_error(data: bytes) -> np.ndarray:
        return np.abs(pixels(shipped.decompress(data).convert("RGB")).astype(float) - rgb).mean(axis=(0, 2))

    assert column_error(refined)[496:528].mean() < 1.05 * column_error(plain)[496:528].mean()


def test_context_and_variable_rate_files_at_effort_decode_unchanged_and_cost_less(shipped_vr, image):
    """lite-vr: the rate of both checkerboard passes and the quality's gains and lambda in the search;
    the bytes come from the same two-pass coder, so the unchanged decoder reads them."""
    plain = shipped_vr.compress(image, quality=VR_QUALITY)
    refined = shipped_vr.compress(image, effort=1, quality=VR_QUALITY)
    assert refined != plain
    header = bitstream.unpack(refined).header
    assert (header.version, header.passes, header.quality, header.effort) == \
        (bitstream.FORMAT_VERSION, 2, VR_QUALITY, 1)
    fresh = Codec.from_checkpoint(by_name(VR).path)
    assert np.array_equal(pixels(fresh.decompress(refined)), pixels(shipped_vr.decompress(refined)))
    assert rd_loss(shipped_vr, image, refined) < rd_loss(shipped_vr, image, plain)
    # lambda of a quality: log-interpolated between the trained levels like the gains (25: half-way from 2.4 to 1.2)
    assert shipped_vr.objective(quality=25).lam == pytest.approx((2.4 * 1.2) ** 0.5)
    assert shipped_vr.objective(quality=100).lam == pytest.approx(0.075)


def test_context_tiles_at_effort_stay_inside_their_tiles(shipped_vr, photos):
    """128-px coding tiles: the refinement pieces follow the tiles, each context inside its own."""
    rgb = np.ascontiguousarray(pixels(crop(photos[1], 256, 192)))
    plain = shipped_vr.encode(shipped_vr.load(rgb), tile=128, quality=VR_QUALITY)
    tiled = shipped_vr.encode(shipped_vr.load(rgb), tile=128, effort=1, quality=VR_QUALITY)
    assert bitstream.unpack(tiled).header.tiles == 4
    assert len(refine.pieces((192 // 16, 256 // 16), 0, refine.tiling.Grid(192, 256, 128))) == 4
    assert rd_loss(shipped_vr, rgb, tiled) < rd_loss(shipped_vr, rgb, plain)


SCRIPT = r"""
import hashlib, sys, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(int(sys.argv[3]))
from texpress.codec.api import Codec
import numpy as np
codec = Codec.from_checkpoint(sys.argv[1])
rgb = np.load(sys.argv[2])
quality = float(sys.argv[4]) if sys.argv[4] != "-" else None
print(hashlib.sha256(codec.compress(rgb, effort=1, quality=quality)).hexdigest(), torch.get_num_threads())
"""


@pytest.mark.parametrize("name, quality", [(SHIPPED, None), (VR, VR_QUALITY)])
def test_bytes_are_reproducible_across_runs_processes_and_thread_counts(name, quality, image, tmp_path):
    import torch

    if by_name(name) is None:
        pytest.skip("no shipped models in this checkout")
    codec = Codec.from_checkpoint(by_name(name).path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digest = hashlib.sha256(codec.compress(image, effort=1, quality=quality)).hexdigest()
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads  # the encode restores the caller's thread count
    assert hashlib.sha256(codec.compress(image, effort=1, quality=quality)).hexdigest() == digest
    np.save(tmp_path / "x.npy", image)
    env = {**os.environ, "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(by_name(name).path), str(tmp_path / "x.npy"), "3",
                          "-" if quality is None else str(quality)],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [digest, "3"]


def test_a_model_without_a_rate_weight_needs_lambda(codec, image):
    with pytest.raises(ConfigError, match="pass --lambda"):
        codec.compress(image, effort=1)
    data = codec.compress(image, effort=1, lam=0.5)
    assert codec.decompress(data).size == (192, 128)


@pytest.mark.parametrize("value", [-1, refine.TOP_EFFORT + 1, "x", "1.5", True])
def test_bad_effort_values_are_refused(codec, value):
    with pytest.raises(ConfigError, match="effort must be a whole number"):
        codec.compress(b"not even an image", effort=value)


def test_objective_comes_from_the_checkpoint_then_the_manifest():
    assert refine.objective_for({}, {"lambda": 0.6}) == refine.Objective(0.6)
    assert refine.objective_for({"lambda": 2.0}, {"lambda": 0.6}).lam == 2.0
    assert refine.objective_for({}, {"lambda": 0.6}, lam=0.1).lam == 0.1
    assert refine.objective_for({"k_m": 0.01}, {"lambda": 0.6}) == refine.Objective(0.6, k_m=0.01)


@pytest.mark.parametrize("args, message", [
    (["--effort", "-1"], "effort must be a whole number from 0 to 3, got '-1'"),
    (["--effort", "4"], "effort must be a whole number from 0 to 3, got '4'"),
    (["--effort", "fast"], "'--effort'"),
    (["--effort", "1", "--lambda", "-2"], "lambda must be a positive number"),
])
def test_cli_bad_effort_is_one_error_line_before_any_work(args, message, tmp_path, photos, monkeypatch, capsys):
    """In-process through texpress.cli.main, as tests/test_bad_args.py does for bulk (no model is loaded)."""
    from texpress.cli import main

    out = tmp_path / "out"
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["texpress", "compress", str(photos[0]), "-o", str(out), *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()


def test_cli_compress_at_effort_reports_the_saving(tmp_path, photos):
    src = tmp_path / "in"
    src.mkdir()
    crop(photos[0], 128, 64).save(src / "a.png")
    proc = texpress("compress", str(src), "-o", str(tmp_path / "out"), "--effort", "1", "-m", SHIPPED)
    assert "saved vs effort 0" in proc.stdout and "effort" in proc.stdout
    restored = texpress("decompress", str(tmp_path / "out"), "-o", str(tmp_path / "png"))
    assert restored.returncode == 0 and (tmp_path / "png" / "a.png").exists()


def test_eval_run_evaluates_efforts_as_separate_curves(tmp_path, photos):
    import json

    crop(photos[0], 128, 64).save(tmp_path / "a.png")
    texpress("eval", "run", str(tmp_path / "a.png"), "-m", f"lite={by_name(SHIPPED).path}", "-b", "none",
             "--effort", "0,1", "-o", str(tmp_path / "eval"), "--quiet")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert {"lite", "lite-e1"} <= set(json.dumps(summary).replace('"', " ").split())
    proc = texpress("eval", "run", str(tmp_path / "a.png"), "-m", str(by_name(SHIPPED).path), "-b", "none",
                    "--effort", "0,9", "-o", str(tmp_path / "bad"), check_rc=2)
    assert proc.stderr.startswith("error:") and not (tmp_path / "bad").exists()
