"""The pieces of a bulk job without Ray: keys, planning, skip decisions, manifest, shards, settings."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from texpress.bulk import manifest as mf
from texpress.bulk.config import BulkConfig
from texpress.bulk.shards import ShardAssembler, build_shard, expected_counts, shard_name
from texpress.bulk.sources import DECOMPRESS, END, FAILED, SKIP, TODO, COMPRESS, key_of, plan, unit_rows
from texpress.bulk.store import Store
from texpress.bulk.worker import restored_key
from texpress.errors import ConfigError

from .conftest import make_store, photo


def test_keys_mirror_folders_and_archive_paths():
    assert key_of("/data/photos", "", "/data/photos/sub/a.jpg") == "sub/a.jpg"
    assert key_of("/data/photos", "", "/data/photos/sub/b.tar::./dir/x.png") == "sub/b.tar/dir/x.png"
    assert key_of("/data/b.tar", "", "/data/b.tar::dir/x.png") == "dir/x.png"  # an archive SOURCE: its paths
    assert key_of("/data/a.jpg", "", "/data/a.jpg") == "a.jpg"
    assert key_of("s3://bkt/pre", "pre", "s3://bkt/pre/x/y.jpg") == "pre/x/y.jpg"
    assert restored_key("sub/a.jpg.tpx") == "sub/a.png"
    assert restored_key("a.png") == "a.png" and restored_key("dir/odd.name.tpx") == "dir/odd.name.png"


def test_plan_lists_without_reading_and_refuses_links(tmp_path):
    make_store(tmp_path / "s", 10)
    os.symlink("/etc/passwd", tmp_path / "s" / "link.jpg")
    (tmp_path / "s" / mf.MANIFEST).write_text("{}\n")  # bookkeeping of a bulk destination: not an input
    units = plan([str(tmp_path / "s")], BulkConfig(), chunk=4)
    assert units[0].rejects == [{"source": str(tmp_path / "s" / "link.jpg"), "reason": "link",
                                 "detail": "symbolic link to '/etc/passwd' not followed"}]
    files = [p for u in units for p in u.paths]
    assert len(files) == 15 and all(os.path.isabs(p) for p in files) and max(len(u.paths) for u in units) == 4
    with pytest.raises(ConfigError, match="same name"):
        plan([str(tmp_path / "s"), str(tmp_path / "s")], BulkConfig(), chunk=4)


def test_unit_rows_skip_only_unchanged_done_inputs(tmp_path):
    make_store(tmp_path / "s", 4, bad=False)
    (unit,) = plan([str(tmp_path / "s")], BulkConfig(), chunk=10)
    first = list(unit_rows(unit, BulkConfig(), COMPRESS, {}))
    assert [r["status"] for r in first] == [TODO] * 4 + [END] and first[-1]["count"] == 4
    done = {r["key"]: ("done", r["sha256"]) for r in first[:3]}
    done[first[1]["key"]] = ("done", "0" * 64)  # its source changed since
    again = list(unit_rows(unit, BulkConfig(), COMPRESS, done))
    assert [r["status"] for r in again] == [SKIP, TODO, SKIP, TODO, END]
    assert again[0]["data"] is None and again[1]["data"] == first[1]["data"]
    # shard destinations redo a whole part unless every input of it is recorded unchanged
    shards = BulkConfig(dest_format="webdataset", shard_size=2)
    assert [r["status"] for r in unit_rows(unit, shards, COMPRESS, done)] == [TODO, TODO, TODO, TODO, END]
    done[first[1]["key"]] = ("done", first[1]["sha256"])
    assert [r["status"] for r in unit_rows(unit, shards, COMPRESS, done)] == [SKIP, SKIP, TODO, TODO, END]


def test_unsafe_archive_members_and_non_tpx_inputs_are_failed_rows(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("ok/a.jpg", photo(1)), ("../escape.jpg", photo(2)), ("ok/a.jpg", photo(3))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (unit,) = plan([str(path)], BulkConfig(), chunk=10)
    rows = list(unit_rows(unit, BulkConfig(), COMPRESS, {}))
    assert [(r["key"], r["status"], r["reason"]) for r in rows[:3]] == [
        ("ok/a.jpg", TODO, ""), ("../escape.jpg", FAILED, "unsafe_path"), ("ok/a.jpg#2", FAILED, "duplicate_key")]
    rows = list(unit_rows(unit, BulkConfig(), DECOMPRESS, {}))
    assert rows[0]["reason"] == "not_tpx"


def test_manifest_parts_last_record_wins_and_compaction(tmp_path):
    store = Store(str(tmp_path / "dest"))
    rec = mf.Recorder(store, every=2)
    base = dict(source="s", sha256="h", size_in=1, output="", size_out=0, pixels=0, reason="", detail="")
    rec.add([{**base, "key": "b", "status": "failed", "reason": "corrupt"}, {**base, "key": "a", "status": "done"}])
    rec.add([{**base, "key": "b", "status": "done"}])
    rec.flush()
    assert len(store.list(mf.PARTS)) == 2
    records = mf.load(store)
    assert records["b"]["status"] == "done"
    records["c"] = {**base, "key": "c", "status": "failed", "reason": "not_image", "detail": "x"}
    (tmp_path / "dest" / "sub").mkdir()
    (tmp_path / "dest" / "sub" / ".x.tpx.part-123").write_bytes(b"half")  # left by a killed writer
    mf.compact(store, records)
    assert store.list() == [mf.ERRORS, mf.MANIFEST] and mf.load(store) == records
    assert [line.split('"key": ')[1][1] for line in store.get(mf.MANIFEST).decode().splitlines()] == ["a", "b", "c"]
    assert b'"reason": "not_image"' in store.get(mf.ERRORS)


def test_shards_are_deterministic_and_complete_when_all_inputs_arrived(tmp_path):
    assert expected_counts(5, 2) == [2, 2, 1] and shard_name(3, 4, 2) == "shard-000003-0002.tar"
    rows = [{"unit": 0, "index": i, "key": f"d/{i}.jpg", "sha256": f"{i:064x}", "status": "done",
             "data": bytes([i]) * 10} for i in range(3)]
    assert build_shard(rows) == build_shard(list(reversed(rows)))
    asm = ShardAssembler(Store(str(tmp_path)), shard_size=2)
    assert asm.add(rows[2]) == []
    assert [n for n, _ in asm.add({"unit": 0, "index": -1, "status": "end", "count": 3})] == ["shard-000000-0001.tar"]
    assert asm.add(rows[0]) == [] and [n for n, _ in asm.add(rows[1])] == ["shard-000000-0000.tar"]
    with tarfile.open(tmp_path / "shard-000000-0000.tar") as tar:
        assert [m.name.rsplit(".", 1)[1] for m in tar.getmembers()] == ["json", "tpx", "json", "tpx"]
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_config_is_strict():
    with pytest.raises(ConfigError, match="workers"):
        BulkConfig(workers=0)
    with pytest.raises(ConfigError, match="unknown bulk keys"):
        BulkConfig.from_dict({"wokers": 2})
    with pytest.raises(ConfigError, match="dest_format"):
        BulkConfig(dest_format="zip")


def test_refusals_before_any_work(tmp_path, lite_ckpt):
    from texpress.bulk.job import run_bulk
    from texpress.errors import CheckpointError

    make_store(tmp_path / "s", 2, bad=False)
    with pytest.raises(ConfigError, match="inside the source"):
        run_bulk("compress", [str(tmp_path / "s")], str(tmp_path / "s" / "coded"), lite_ckpt)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        run_bulk("compress", [str(tmp_path / "s")], str(tmp_path / "out"), tmp_path / "missing.ckpt")
    store = Store(str(tmp_path / "out"))
    store.put(mf.SETTINGS, b'{"mode": "compress", "model": "another", "dest_format": "files", "shard_size": 256}')
    with pytest.raises(ConfigError, match="model 'another'"):
        run_bulk("compress", [str(tmp_path / "s")], str(tmp_path / "out"), lite_ckpt)


def test_model_refs_resolve_through_the_registry(tmp_path, lite_ckpt, monkeypatch):
    import mlflow

    from texpress.codec.checkpoint import read_checkpoint
    from texpress.registry.refs import resolve_checkpoint
    from texpress.registry.register import register_checkpoint

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TEXPRESS_CACHE_DIR", str(tmp_path / "cache"))
    registered = register_checkpoint(lite_ckpt, "texpress-bulk", tracking_uri=uri)
    mlflow.MlflowClient(uri).set_registered_model_alias("texpress-bulk", "champion", registered.version)
    path = resolve_checkpoint("models:/texpress-bulk@champion")
    fingerprint = read_checkpoint(path)["fingerprint"]
    assert path.is_file() and fingerprint == read_checkpoint(lite_ckpt)["fingerprint"] == registered.fingerprint
