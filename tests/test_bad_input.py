"""Bad input on every surface a user reaches: each CLI command (codec, train, data, eval, bulk,
registry) and each DVC stage answers a bad
argument, file or parameter with one line (exit 1 or 2, no traceback) and writes nothing."""

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.heavy  # about 20 child processes, each importing torch


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def assert_one_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode in (1, 2), text
    assert "Traceback" not in text, text
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), proc.stderr
    assert fragment in errors[0], errors[0]


def files_under(path: Path) -> list[str]:
    """Files (not folders) below path: what a failed command must not leave behind."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    from texpress.samples import sample_photos

    return sample_photos()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, lite_ckpt, photos):
    from PIL import Image

    from texpress.codec import bitstream
    from texpress.codec.api import Codec

    root = tmp_path_factory.mktemp("bad")
    codec = Codec.from_checkpoint(lite_ckpt)
    data = codec.compress(Image.open(photos[0]).convert("RGB").crop((0, 0, 64, 64)))
    body = bytearray(data[:-4])
    body[24:28] = (60_000).to_bytes(4, "little")
    body[28:32] = (60_000).to_bytes(4, "little")
    (root / "huge.tpx").write_bytes(bytes(body) + zlib.crc32(body).to_bytes(4, "little"))
    payload = bitstream.unpack(data)
    v1 = bitstream.Header(**{**payload.header.to_dict(), "version": 1})
    (root / "escapes.tpx").write_bytes(bitstream.pack_v1(v1, b"\xff" * 2_000_000, payload.z_string))
    (root / "garbage.ckpt").write_bytes(os.urandom(300))
    (root / "a.png").write_bytes((photos[0]).read_bytes())
    (root / "curve.json").write_text("{not json")
    (root / "file").write_text("x")
    return root


CASES = {
    "compress: corrupt checkpoint": (["compress", "{r}/a.png", "-o", "{o}", "-m", "{r}/garbage.ckpt"], "garbage.ckpt"),
    "compress: missing input": (["compress", "{r}/nope.png", "-o", "{o}", "-m", "{m}"], "no such file"),
    "compress: bad pixel limit variable": (["compress", "{r}/a.png", "-o", "{o}", "-m", "{m}"], "TEXPRESS_MAX_PIXELS"),
    "decompress: declared size above the limit": (["decompress", "{r}/huge.tpx", "-o", "{o}", "-m", "{m}"], "pixel limit"),
    "decompress: crafted escape path": (["decompress", "{r}/escapes.tpx", "-o", "{o}", "-m", "{m}"], "corrupt .tpx"),
    "decompress: output is a file": (["decompress", "{r}/huge.tpx", "-o", "{r}/file", "-m", "{m}"], "not a folder"),
    "info: a folder": (["info", "{r}"], "{r}"),
    "info: not a tpx": (["info", "{r}/a.png"], "bad magic"),
    "models show: not a checkpoint": (["models", "show", "{r}/garbage.ckpt"], "garbage.ckpt"),
    "models init: unknown preset": (["models", "init", "-p", "nope", "-o", "{o}/x.ckpt"], "unknown preset"),
    "models init: unwritable place": (["models", "init", "-p", "lite", "-o", "{r}/file/x.ckpt"], "x.ckpt"),
    "train: no training data": (["train", "--preset", "lite", "-o", "{o}"], "--shards is required"),
    "data ingest: bad split fraction": (["data", "ingest", "{r}/a.png", "-o", "{o}/ds", "--val-frac", "2"], "val"),
    "data stats: not a dataset": (["data", "stats", "{r}"], "{r}"),
    "eval bd-rate: malformed curve": (["eval", "bd-rate", "{r}/curve.json", "{r}/curve.json"], "curve.json"),
    "bulk compress: corrupt checkpoint": (["bulk", "compress", "{r}/a.png", "-o", "{o}", "-m", "{r}/garbage.ckpt"],
                                          "garbage.ckpt"),
    "registry pull: no model store": (["registry", "pull", "models:/nope@champion", "-o", "{o}/x.ckpt",
                                       "--tracking-uri", "sqlite:///{o}/none.db"], "no MLflow store"),
    "eval run: missing checkpoint": (["eval", "run", "{r}/a.png", "-m", "{r}/none.ckpt", "-o", "{o}"], "none.ckpt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_cli_command_answers_bad_input_with_one_line_and_writes_nothing(case, inputs, lite_ckpt, tmp_path):
    argv, fragment = CASES[case]
    out = tmp_path / "out"
    fill = {"r": str(inputs), "o": str(out), "m": str(lite_ckpt)}
    env = {"TEXPRESS_MAX_PIXELS": "lots"} if "variable" in case else {}
    before = files_under(inputs)
    proc = run(["-m", "texpress.cli", *[a.format(**fill) for a in argv]], tmp_path, env)
    assert_one_line(proc, fragment.format(**fill))
    assert files_under(out) == [] and files_under(inputs) == before  # nothing written, nothing half-written


STAGE_PARAMS = {
    "prepare": "prepare:\n  sources: [{r}/nope]\n",
    "shard": "shard:\n  val_fraction: lots\n",
    "train": "train:\n  preset: nope\nloader: {{}}\n",
    "evaluate": "evaluate:\n  qualities: 7\n",
}


@pytest.mark.parametrize("stage", list(STAGE_PARAMS))
def test_each_dvc_stage_answers_bad_params_with_one_line_and_writes_nothing(stage, inputs, tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(REPO / "pipelines", work / "pipelines")
    (work / "params.yaml").write_text(STAGE_PARAMS[stage].format(r=inputs))
    before = files_under(work)
    proc = run([f"pipelines/{stage}.py"], work)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in text, text
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1, proc.stderr
    assert files_under(work) == before
