"""Nothing lost, nothing twice: a 500-photo store (with bad files) coded by `texpress bulk compress`
on a real Ray; the driver is SIGKILLed mid-run, the same command is run again while one of its
codec actors is SIGKILLed, and the result must be exactly the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from .conftest import BAD_FILES, MAX_PIXELS, make_store, tree

pytestmark = pytest.mark.heavy


def _codec_actors(temp_dir: str) -> list[psutil.Process]:
    """Processes of CodecWorker actors of the Ray whose session lives under temp_dir."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "CodecWorker" not in " ".join(p.info["cmdline"] or []):
                continue
            parent = p.parent()
            if parent is not None and temp_dir in " ".join(parent.cmdline()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found, key=lambda p: p.pid)


def _parts(dest: Path) -> int:
    return len(list((dest / "_manifest").glob("part-*.jsonl")))


def test_sigkill_of_driver_and_worker_then_rerun_gives_the_exact_outputs(local_ray, lite_ckpt, codec, tmp_path):
    photos = make_store(tmp_path / "store", 500)
    expected = {f"{k}.tpx": codec.compress(v) for k, v in photos.items()}
    dest = tmp_path / "coded"
    env = {**os.environ, "RAY_ADDRESS": local_ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
    args = [sys.executable, "-m", "texpress.cli", "bulk", "compress", str(tmp_path / "store"), "-o", str(dest),
            "-m", str(lite_ckpt), "--workers", "2", "--batch-size", "4", "--max-pixels", str(MAX_PIXELS), "--no-progress"]

    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and first.poll() is None and _parts(dest) < 2:
                time.sleep(0.1)
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
    partial = [k for k in tree(dest) if k.endswith(".tpx")]
    assert 0 < len(partial) < 500 and not (dest / "manifest.jsonl").exists()
    assert all(tree(dest)[k] == expected[k] for k in partial)  # what is there is complete

    temp_dir = local_ray._private.worker._global_node.get_temp_dir_path()
    killed: dict = {}

    def kill_one_actor() -> None:
        deadline, start_parts = time.time() + 300, _parts(dest)
        while time.time() < deadline and _parts(dest) < start_parts + 1:
            time.sleep(0.1)
        actors = _codec_actors(temp_dir)
        if actors:
            killed["pid"] = actors[-1].pid
            os.kill(actors[-1].pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    killer.join(timeout=5)
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]  # 1: some inputs are bad
    assert "pid" in killed, "no codec actor was found to kill"

    out = tree(dest)
    assert {k: v for k, v in out.items() if k.endswith(".tpx")} == expected  # 0 lost, 0 extra, the same bytes
    assert set(out) - set(expected) == {"manifest.jsonl", "errors.jsonl"}  # no temporaries, no parts left
    records = [json.loads(line) for line in out["manifest.jsonl"].decode().splitlines()]
    assert len(records) == 505 and len({r["key"] for r in records}) == 505
    assert sum(r["status"] == "done" for r in records) == 500
    assert {json.loads(line)["key"]: json.loads(line)["reason"] for line in out["errors.jsonl"].decode().splitlines()} == BAD_FILES
    report = json.loads((dest / "report.json").read_text())
    # recorded inputs were skipped, the rest coded once each (a retried batch still reports once)
    assert report["skipped"] + report["coded"] == 500 and 0 < report["skipped"] <= len(partial)

    verified = subprocess.run([sys.executable, "-m", "texpress.cli", "bulk", "verify", str(dest), "-m", str(lite_ckpt),
                               "--sample", "40", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["checked"] == 40
