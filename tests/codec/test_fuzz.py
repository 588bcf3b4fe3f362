"""A small run of the fuzz harness (benchmarks/fuzz_tpx.py runs 10,000 files): mutated .tpx files,
each decoded in a child process with a time and memory limit, end decoded or refused on one line."""

import importlib.util
import json
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_tpx.py"


@pytest.mark.heavy
def test_mutated_files_never_crash_hang_or_bloat_the_decoder(tmp_path):
    spec = importlib.util.spec_from_file_location("fuzz_tpx", HARNESS)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    result = fuzz.main(["--files", "60", "--batch", "30", "--workers", "1", "--seed", "7",
                        "--results", str(tmp_path / "fuzz.json"), "--timeout", "120"])
    assert result["files"] == 60
    assert all(result["outcomes"][k] == 0 for k in fuzz.BAD), result["failures"]
    assert result["outcomes"]["refused"] > 0 and result["outcomes"]["decoded"] > 0
    assert json.loads((tmp_path / "fuzz.json").read_text())["outcomes"] == result["outcomes"]


def test_harness_pins_a_crash_on_its_file(tmp_path, monkeypatch):
    """The harness itself: a child that dies on one file is reported as a crash of that file, and
    the rest of the batch still runs in a new child."""
    spec = importlib.util.spec_from_file_location("fuzz_tpx", HARNESS)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    monkeypatch.setattr(fuzz, "CHILD", (
        "import os, sys\nprint('READY', flush=True)\nfor line in sys.stdin:\n    p = line.strip()\n"
        "    if not p:\n        break\n    print('START', p, flush=True)\n"
        "    if p.endswith('boom'):\n        os.abort()\n    print('DONE', p, 'refused', '0.0', 'x', flush=True)\n"))
    paths = [str(tmp_path / n) for n in ("a", "boom", "c")]
    results, _ = fuzz.run_batch(tmp_path / "unused.ckpt", paths, 30.0, 1 << 34, 60.0)
    assert {Path(p).name: r[0] for p, r in results.items()} == {"a": "refused", "boom": "crash", "c": "refused"}
