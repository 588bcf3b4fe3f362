"""`texpress bulk` as a user runs it: one-line errors and exit code 2 before any work is started
(the commands' full runs are in test_resume.py, which drives the CLI on a real Ray)."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import make_store


def texpress(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", "RAY_ADDRESS": ""})
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def test_usage_errors_are_one_line_with_exit_code_2(tmp_path, lite_ckpt):
    make_store(tmp_path / "s", 2, bad=False)
    cases = [
        (["bulk", "compress", str(tmp_path / "s"), "-o", str(tmp_path / "o"), "-m", str(tmp_path / "nope.ckpt")],
         "no such checkpoint file"),
        (["bulk", "decompress", str(tmp_path / "s"), "-o", str(tmp_path / "s" / "x"), "-m", str(lite_ckpt)],
         "is inside the source"),
        (["bulk", "verify", str(tmp_path / "s"), "-m", str(lite_ckpt)], "not a bulk destination"),
    ]
    for args, message in cases:
        proc = texpress(*args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    help_text = texpress("bulk", "compress", "--help").stdout
    for option in ("--workers", "--gpus-per-worker", "--shards", "--webdataset", "--endpoint-url", "--model"):
        assert option in help_text
