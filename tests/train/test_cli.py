"""`texpress train` as a user runs it: one-line errors for unusable inputs (no Ray is started for them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def texpress(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--shards", "{tmp}/nowhere"], "not found (is this a texpress shard directory?)"),
    (["--shards", "{shards}", "--preset", "huge"], "unknown preset 'huge'"),
    (["--shards", "{shards}", "--params", "{tmp}/missing.yaml"], "missing.yaml: no such params file"),
    (["--shards", "{shards}", "--steps", "0"], "--steps must be at least 1"),
    (["--shards", "{shards}", "--from", "{tmp}/none.ckpt"], "none.ckpt: no such checkpoint file"),
    (["--images", "{tmp}"], "--images needs --backend torch"),
    (["--backend", "tpu", "--shards", "{shards}"], "--backend must be ray or torch"),
    (["--backend", "torch", "--images", "{tmp}/nowhere"], "nowhere: no such folder of images"),
    (["--backend", "torch", "--images", "{tmp}", "--shards", "{shards}"], "give one of --images"),
])
def test_usage_errors_are_one_line(args, message, shards, tmp_path):
    args = [a.format(tmp=tmp_path, shards=shards) for a in args]
    proc = texpress("train", *args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_params_file_sections_are_checked(shards, tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lamda_a: 2\n")
    proc = texpress("train", "--shards", str(shards), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "unknown train keys: lamda_a" in proc.stderr, proc.stderr


def test_output_that_is_a_file_fails_before_training(shards, tmp_path):
    (tmp_path / "out").write_text("a file, not a folder")
    proc = texpress("train", "--shards", str(shards), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "out: output exists and is not a folder" in proc.stderr
