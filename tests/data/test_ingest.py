"""Ingest end to end: counts, reports, dedupe, split stability, shard bounds, determinism."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from texpress.data import manifest as mf
from texpress.data.config import ShardConfig
from texpress.data.ingest import ingest
from texpress.errors import InputError

from .conftest import image_bytes, tree_files

CFG = ShardConfig(min_side=256, val_frac=0.25, test_frac=0.25, max_samples=2)


def _samples(out: Path) -> dict[str, dict]:
    """key -> {"json": record, ext: bytes, "shard": split/name} over all shards."""
    found = {}
    for tar_path in sorted(out.glob("*/shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                entry = found.setdefault(key, {"shard": f"{tar_path.parent.name}/{tar_path.name}"})
                data = tar.extractfile(m).read()
                entry[ext] = json.loads(data) if ext == "json" else data
                assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o444)
    return found


def test_counts_reports_and_original_bytes(tmp_path, photo_dir, malicious_tar, no_escape):
    (photo_dir / "notes.txt").write_text("not an image")
    (photo_dir / "tiny.jpg").write_bytes(image_bytes(100, 80, seed=9))
    truncated = image_bytes(300, 300, seed=10)
    (photo_dir / "truncated.jpg").write_bytes(truncated[: len(truncated) // 3])
    out = tmp_path / "ds"
    seen_outcomes = []
    result = ingest([str(photo_dir), str(malicious_tar), str(tmp_path / "missing")], out, CFG, on_item=seen_outcomes.append)
    m = json.loads((out / "manifest.json").read_text())
    assert m == result.manifest
    # photo_dir: 6 distinct + 1 duplicate + 3 bad; tar: 1 good + 6 refused; 1 missing source
    assert (m["seen"], m["accepted"], m["duplicates"], m["rejected"]) == (18, 7, 1, 10)
    assert m["seen"] == m["accepted"] + m["rejected"] + m["duplicates"] == len(seen_outcomes)
    assert m["rejected_by_reason"] == {"corrupt": 1, "link": 2, "missing": 1, "not_image": 1,
                                       "special_file": 1, "too_small": 1, "unsafe_path": 3}
    assert m["source_errors"] == 1 and len(result.source_errors) == 1
    assert sum(m["splits"].values()) == 7
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 10 and all(set(r) == {"source", "reason", "detail"} for r in rejected)
    assert {r["source"].split("::", 1)[1] for r in rejected if r["reason"] == "unsafe_path"} == {
        "../escape.jpg", "ok/../../escape2.jpg", "/tmp/texpress-absolute.jpg"}
    [dup] = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert dup["source"].endswith("sub/copy_of_img0.jpg") and dup["duplicate_of"].endswith("photos/img0.jpg")
    # every accepted sample keeps its original bytes and a complete record
    samples = _samples(out)
    assert len(samples) == 7
    for key, s in samples.items():
        rec = s["json"]
        assert set(rec) >= {"source", "sha256", "width", "height", "split"}
        assert s["shard"].startswith(rec["split"] + "/")
        assert key.endswith(rec["sha256"][:12]) and "." not in key
        original = rec["source"]
        if "::" in original:
            archive, member = original.split("::")
            with tarfile.open(archive) as tar:
                assert s[rec["ext"]] == tar.extractfile(member).read()
        else:
            assert s[rec["ext"]] == Path(original).read_bytes()
    assert mf.verify(out) == []
    assert mf.dataset_version(out) == m["dataset_version"]


def test_byte_identical_output_for_the_same_input(tmp_path, photo_dir, good_tar):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ingest([str(photo_dir), str(good_tar)], a, CFG)
    ingest([str(photo_dir), str(good_tar)], b, CFG)
    ingest([str(photo_dir), str(good_tar)], c, CFG.replace(workers=2))
    assert tree_files(a) == tree_files(b) == tree_files(c)
    assert len(list(a.glob("*/shard-*.tar"))) >= 3


def test_split_is_stable_when_images_are_added_or_removed(tmp_path, photo_dir):
    ingest([str(photo_dir)], tmp_path / "before", CFG)
    before = {k: s["json"]["split"] for k, s in _samples(tmp_path / "before").items()}
    (photo_dir / "img1.jpg").unlink()
    for i in range(6):
        (photo_dir / f"new{i}.jpg").write_bytes(image_bytes(300, 300, seed=50 + i))
    ingest([str(photo_dir)], tmp_path / "after", CFG)
    after = {k: s["json"]["split"] for k, s in _samples(tmp_path / "after").items()}
    common = set(before) & set(after)
    assert len(common) == len(before) - 1 and len(after) == len(before) + 5
    assert all(before[k] == after[k] for k in common)
    assert {s for s in after.values()} == {"train", "val", "test"}


def test_shards_are_bounded_by_samples_and_bytes(tmp_path, photo_dir):
    out = tmp_path / "ds"
    max_bytes = 4 * 10240  # four tar records
    ingest([str(photo_dir)], out, ShardConfig(min_side=256, val_frac=0, test_frac=0, max_samples=100, max_bytes=max_bytes))
    split = json.loads((out / "train" / "manifest.json").read_text())
    assert split["count"] == 6 and len(split["shards"]) >= 3
    for shard in split["shards"]:
        assert shard["bytes"] == (out / "train" / shard["name"]).stat().st_size
        assert shard["bytes"] <= max_bytes or shard["count"] == 1
    ingest([str(photo_dir)], out, ShardConfig(min_side=256, val_frac=0, test_frac=0, max_samples=4))
    split = json.loads((out / "train" / "manifest.json").read_text())
    assert [s["count"] for s in split["shards"]] == [4, 2]
    # a single sample larger than max_bytes gets a shard of its own
    ingest([str(photo_dir)], out, ShardConfig(min_side=256, val_frac=0, test_frac=0, max_bytes=1000))
    split = json.loads((out / "train" / "manifest.json").read_text())
    assert [s["count"] for s in split["shards"]] == [1] * 6


def test_output_replaces_a_dataset_but_never_other_folders(tmp_path, photo_dir):
    out = tmp_path / "ds"
    ingest([str(photo_dir)], out, CFG)
    first = mf.dataset_version(out)
    shutil.rmtree(photo_dir / "sub")
    ingest([str(photo_dir)], out, CFG)
    assert mf.dataset_version(out) != first and mf.verify(out) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no temp leftovers
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(InputError, match="refusing to replace"):
        ingest([str(photo_dir)], precious, CFG)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_failure_midway_leaves_no_partial_output(tmp_path, photo_dir):
    out = tmp_path / "ds"

    def boom(outcome):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        ingest([str(photo_dir)], out, CFG, on_item=boom)
    assert not out.exists() and list(tmp_path.iterdir()) == [photo_dir]


def test_sample_photos_fill_every_split_with_default_params(tmp_path):
    """The pipeline default (params.yaml) gives val and test at least one of the 11 bundled photos."""
    from texpress.params import load_params
    from texpress.samples import sample_photos

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    config = ShardConfig.from_dict(load_params(params, "shard"))
    photos = sample_photos()
    assert len(photos) == 11
    m = ingest([str(p) for p in photos], tmp_path / "ds", config).manifest
    assert m["accepted"] == 11 and all(m["splits"][s] >= 1 for s in ("train", "val", "test")), m["splits"]


def test_shard_entries_are_key_ext_pairs_in_key_order(tmp_path, photo_dir):
    ingest([str(photo_dir)], tmp_path / "ds", CFG)
    with tarfile.open(next((tmp_path / "ds").glob("*/shard-000000.tar"))) as tar:
        names = tar.getnames()
    assert names == sorted(names, key=lambda n: (n.split(".")[0], n))  # KEY.ext, KEY.json pairs
    assert all(n.count(".") == 1 for n in names)


def test_a_run_that_accepts_nothing_keeps_the_earlier_dataset(tmp_path, photo_dir):
    out = tmp_path / "ds"
    ingest([str(photo_dir)], out, CFG)
    before = tree_files(out)
    result = ingest([str(tmp_path / "typo")], out, CFG)  # a mistyped source: nothing accepted
    assert result.manifest["accepted"] == 0 and not result.written
    assert tree_files(out) == before and mf.verify(out) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
    fresh = ingest([str(tmp_path / "typo")], tmp_path / "fresh", CFG)  # no earlier dataset: the report is written
    assert fresh.written and json.loads((tmp_path / "fresh" / "rejected.jsonl").read_text())["reason"] == "missing"
