"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, no tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import crop


def texpress(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory, photos, lite_ckpt, other_ckpt):
    """A folder tree of good images plus every kind of bad input, compressed once."""
    root = tmp_path_factory.mktemp("cli")
    src = root / "in"
    (src / "nested" / "deeper").mkdir(parents=True)
    crop(photos[0], 200, 120).save(src / "a.png")
    crop(photos[1], 90, 130).save(src / "nested" / "b.jpg", quality=90)
    crop(photos[5], 64, 64).save(src / "nested" / "deeper" / "c.webp")
    (src / "notes.txt").write_text("ignored: not an image suffix")

    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    jpeg = (src / "nested" / "b.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = (src / "a.png").read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    (bad / "text.png").write_text("this is not a png\n")
    (bad / "unreadable.png").symlink_to(root / "does-not-exist.png")  # root can read any mode: a dangling link
    crop(photos[0], 400, 400).save(bad / "huge.png")

    out = root / "tpx"
    proc = texpress("compress", str(src), "-o", str(out), "-m", str(lite_ckpt))
    return {"root": root, "src": src, "bad": bad, "out": out, "log": proc, "model": lite_ckpt, "other": other_ckpt}


def test_compress_mirrors_folders_and_prints_a_summary(store):
    out = store["out"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tpx")) == [
        "a.tpx", "nested/b.tpx", "nested/deeper/c.tpx"]
    log = store["log"].stdout
    for word in ("images", "bytes in", "bytes out", "mean bpp", "time"):
        assert word in log
    assert "│ 3" in log


def test_decompress_restores_pngs_of_the_original_size(store):
    dest = store["root"] / "png"
    texpress("decompress", str(store["out"]), "-o", str(dest), "-m", str(store["model"]))
    sizes = {p.relative_to(dest).as_posix(): Image.open(p).size for p in dest.rglob("*.png")}
    assert sizes == {"a.png": (200, 120), "nested/b.png": (90, 130), "nested/deeper/c.png": (64, 64)}


def test_info_prints_the_header_as_json(store):
    proc = texpress("info", str(store["out"] / "a.tpx"))
    header = json.loads(proc.stdout)
    assert header["width"] == 200 and header["height"] == 120 and header["checksum"] == "ok"
    assert header["bytes"] == (store["out"] / "a.tpx").stat().st_size


def test_bad_images_each_get_one_line_and_the_batch_goes_on(store):
    dest = store["root"] / "mixed"
    good = store["src"] / "a.png"
    proc = texpress("compress", str(store["bad"]), str(good), "-o", str(dest), "-m", str(store["model"]),
                    "--max-pixels", "100000", check_rc=1)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    expected = {"empty.png": "empty file", "truncated.jpg": "truncated", "truncated.png": "truncated",
                "text.png": "not an image", "unreadable.png": "no such file", "huge.png": "above the limit"}
    assert len(errors) == len(expected), proc.stderr
    for name, reason in expected.items():
        assert any(name in l and reason in l for l in errors), (name, proc.stderr)
    assert sorted(p.name for p in dest.rglob("*")) == ["a.tpx"]  # no partial outputs


def test_bad_tpx_files_each_get_one_line(store):
    bad = store["root"] / "badtpx"
    bad.mkdir()
    data = (store["out"] / "a.tpx").read_bytes()
    (bad / "truncated.tpx").write_bytes(data[: len(data) - 40])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (bad / "flipped.tpx").write_bytes(bytes(flipped))
    (bad / "zero.tpx").write_bytes(b"")
    (bad / "good.tpx").write_bytes(data)
    dest = store["root"] / "badtpx-out"
    proc = texpress("decompress", str(bad), "-o", str(dest), "-m", str(store["model"]), check_rc=1)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 3, proc.stderr
    assert any("truncated.tpx" in l and "truncated" in l for l in errors)
    assert any("flipped.tpx" in l and "checksum" in l for l in errors)
    assert any("zero.tpx" in l for l in errors)
    assert sorted(p.name for p in dest.iterdir()) == ["good.png"]


def test_other_model_is_refused_naming_both_fingerprints(store):
    proc = texpress("decompress", str(store["out"] / "a.tpx"), "-o", str(store["root"] / "x"),
                    "-m", str(store["other"]), check_rc=1)
    assert "made by model" in proc.stderr and "given model is" in proc.stderr
    assert not (store["root"] / "x" / "a.png").exists()


def test_never_overwrites_without_force(store):
    target = store["out"] / "a.tpx"
    before = target.read_bytes()
    target.write_bytes(b"sentinel")
    proc = texpress("compress", str(store["src"] / "a.png"), "-o", str(store["out"]), "-m", str(store["model"]),
                    check_rc=1)
    assert "--force" in proc.stderr and target.read_bytes() == b"sentinel"
    texpress("compress", str(store["src"] / "a.png"), "-o", str(store["out"]), "-m", str(store["model"]), "--force")
    assert target.read_bytes() == before


def test_usage_errors_exit_2_with_one_line(tmp_path):
    proc = texpress("compress", str(tmp_path), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "none.ckpt"), check_rc=2)
    assert proc.stderr.strip().count("\n") == 0 and "no such checkpoint" in proc.stderr
    proc = texpress("info", str(tmp_path / "missing.tpx"), check_rc=2)
    assert "missing.tpx" in proc.stderr


def test_models_list_and_init(tmp_path):
    listing = json.loads(texpress("models", "list", "--json").stdout)
    assert [r["preset"] for r in listing] == ["hific", "base", "lite", "lite-vr", "lite-cg"]
    assert all(r["decoder_kmac_per_px"] > 0 and r["decoder_params"] > 0 for r in listing)
    by_preset = {r["preset"]: r for r in listing}  # the context models' cost is counted, on both sides
    assert 0 < by_preset["lite-cg"]["context_kmac_per_px"] < by_preset["lite-vr"]["context_kmac_per_px"]
    assert by_preset["lite-cg"]["decoder_kmac_per_px"] == pytest.approx(
        by_preset["lite"]["decoder_kmac_per_px"] + by_preset["lite-cg"]["context_kmac_per_px"])
    texpress("models", "init", "--preset", "lite", "--seed", "7", "-o", str(tmp_path / "m.ckpt"), "--upscale", "deconv")
    shown = json.loads(texpress("models", "show", str(tmp_path / "m.ckpt")).stdout)
    assert shown["config"]["upscale"] == "deconv" and shown["meta"]["seed"] == 7
    texpress("models", "init", "--preset", "lite", "-o", str(tmp_path / "m.ckpt"), check_rc=2)
    texpress("models", "init", "--preset", "nope", "-o", str(tmp_path / "n.ckpt"), check_rc=2)


def test_output_that_is_a_file_is_a_usage_error_and_a_file_given_twice_is_coded_once(store, tmp_path):
    a = store["src"] / "a.png"
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    proc = texpress("compress", str(a), "-o", str(blocker), "-m", str(store["model"]), check_rc=2)
    assert proc.stderr.strip().count("\n") == 0 and "not a folder" in proc.stderr
    dest = tmp_path / "twice"
    proc = texpress("compress", str(a), str(a), str(store["src"]), "-o", str(dest), "-m", str(store["model"]))
    assert "error" not in proc.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.tpx")) == [
        "a.tpx", "nested/b.tpx", "nested/deeper/c.tpx"]


def test_info_errors_name_the_file_and_paths_with_brackets_print_verbatim(tmp_path):
    bad = tmp_path / "x [1].tpx"
    bad.write_bytes(b"TPX\x1a")
    proc = texpress("info", str(bad), check_rc=2)
    assert str(bad) in proc.stderr and "truncated" in proc.stderr
    ckpt = tmp_path / "m [x].ckpt"
    proc = texpress("models", "init", "--preset", "lite", "-o", str(ckpt))
    assert str(ckpt) in " ".join(proc.stdout.split())


def test_16_bit_rgb_and_animated_inputs_warn(store, tmp_path, photos):
    import struct
    import zlib

    import numpy as np

    from texpress.codec.imageio import load_image

    src = tmp_path / "src"
    src.mkdir()
    rgb16 = np.asarray(crop(photos[0], 40, 30)).astype(">u2") * 257  # a 16-bit RGB PNG, written by hand

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    (src / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 30, 16, 2, 0, 0, 0))
                                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    frames = [crop(photos[i], 40, 30).convert("P") for i in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert any("16-bit RGB" in w for w in load_image(src / "deep.png").warnings)
    assert any("first frame" in w for w in load_image(src / "anim.gif").warnings)
    proc = texpress("compress", str(src), "-o", str(tmp_path / "o"), "-m", str(store["model"]))
    assert "deep.png" in proc.stderr and "anim.gif" in proc.stderr and "warning" in proc.stderr
