"""`texpress data ingest` and `texpress data stats` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys


def texpress(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True, timeout=120)


def test_ingest_then_stats(tmp_path, photo_dir, malicious_zip):
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "ds"
    r = texpress("data", "ingest", str(photo_dir), str(malicious_zip), str(tmp_path / "missing"), "-o", str(out),
                 "--min-side", "256", "--val-frac", "0.3", "--test-frac", "0.3", "--max-samples", "2", "--no-progress")
    assert r.returncode == 1, r.stderr  # one source could not be read; the rest was ingested
    assert "Traceback" not in r.stderr
    assert "rejected:" in r.stderr and "broken.jpg" in r.stderr and "../escape.jpg" in r.stderr
    assert f"error: {tmp_path / 'missing'}: no such file or directory" in r.stderr
    assert "accepted" in r.stdout and "duplicates" in r.stdout
    s = texpress("data", "stats", str(out), "--json")
    assert s.returncode == 0, s.stderr
    stats = json.loads(s.stdout)
    assert {"seen", "accepted", "rejected", "duplicates", "splits"} <= set(stats)
    # photos: 6 + 1 duplicate + 1 broken; zip: 1 good + 3 refused; 1 missing source
    assert (stats["seen"], stats["accepted"], stats["duplicates"], stats["rejected"]) == (13, 7, 1, 5)
    assert stats["rejected_by_reason"] == {"corrupt": 1, "link": 1, "missing": 1, "unsafe_path": 2}
    assert sum(stats["splits"].values()) == 7 and set(stats["splits"]) == {"train", "val", "test"}
    table = texpress("data", "stats", str(out))
    assert table.returncode == 0 and "rejected" in table.stdout and "train" in table.stdout


def test_errors_are_one_line(tmp_path, photo_dir):
    r = texpress("data", "stats", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:")
    r = texpress("data", "ingest", str(photo_dir), "-o", str(tmp_path / "x"), "--val-frac", "0.8", "--test-frac", "0.5")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("no images here")
    r = texpress("data", "ingest", str(empty), "-o", str(tmp_path / "y"), "--no-progress")
    assert r.returncode == 1 and "no image was accepted" in r.stderr
    # names are printed as they are, never read as terminal markup
    odd = tmp_path / "odd[/x]"
    r = texpress("data", "ingest", str(odd), "-o", str(tmp_path / "z"), "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {odd}: no such file or directory" in r.stderr
