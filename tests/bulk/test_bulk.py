"""Bulk jobs on a real local Ray: folders, archives and WebDataset shards, coded, re-run and restored."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image

from texpress.bulk.config import BulkConfig
from texpress.bulk.job import run_bulk
from texpress.bulk.verify import verify

from .conftest import BAD_FILES, MAX_PIXELS, make_store, photo, tree, zip_of


def _restored(rel: str) -> str:
    return f"{rel.rsplit('.', 1)[0]}.png"


def test_folder_compress_rerun_decompress_and_verify(local_ray, lite_ckpt, codec, tmp_path):
    photos = make_store(tmp_path / "store", 24)
    dest = tmp_path / "coded"
    cfg = BulkConfig(workers=2, files_per_task=8, batch_size=4, max_pixels=MAX_PIXELS)
    report = run_bulk("compress", [str(tmp_path / "store")], str(dest), lite_ckpt, cfg)
    assert (report.inputs, report.done, report.failed, report.coded, report.skipped) == (29, 24, 5, 24, 0)
    out = tree(dest)
    assert set(out) == {f"{k}.tpx" for k in photos} | {"manifest.jsonl", "errors.jsonl"}
    for key, data in photos.items():  # deterministic: the same bytes as the plain codec in this process
        assert out[f"{key}.tpx"] == codec.compress(data), key
    errors = {e["key"]: e["reason"] for e in map(json.loads, out["errors.jsonl"].decode().splitlines())}
    assert errors == BAD_FILES
    assert report.bytes_in == sum(map(len, photos.values()))
    assert report.bytes_out == sum(len(out[f"{k}.tpx"]) for k in photos)
    pixels = sum(Image.open(io.BytesIO(d)).size[0] * Image.open(io.BytesIO(d)).size[1] for d in photos.values())
    assert report.mean_bpp == round(8 * report.bytes_out / pixels, 6)
    assert json.loads((dest / "report.json").read_text())["done"] == 24

    # the same job again: nothing recoded; a changed input is coded again, alone
    changed = next(iter(photos))
    (tmp_path / "store" / changed).write_bytes(photo(777, "PNG"))
    again = run_bulk("compress", [str(tmp_path / "store")], str(dest), lite_ckpt, cfg)
    assert (again.coded, again.skipped, again.failed_now) == (1, 23, 5)
    assert (dest / f"{changed}.tpx").read_bytes() == codec.compress(photo(777, "PNG"))

    restored = tmp_path / "restored"
    back = run_bulk("decompress", [str(dest)], str(restored), lite_ckpt, cfg)
    assert (back.done, back.failed) == (24, 0)
    files = tree(restored)
    assert set(files) == {_restored(k) for k in photos} | {"manifest.jsonl", "errors.jsonl"}
    key = sorted(photos)[1]
    pixels_back = np.asarray(Image.open(io.BytesIO(files[_restored(key)])))
    assert np.array_equal(pixels_back, np.asarray(codec.decompress((dest / f"{key}.tpx").read_bytes())))

    checked = verify(str(dest), lite_ckpt, sample=None)
    assert checked.ok, checked.problems
    assert (checked.recorded, checked.outputs, checked.checked) == (24, 24, 24) and checked.psnr_min > 0
    (dest / f"{key}.tpx").write_bytes(b"TPX broken")
    (dest / "stray.tpx").write_bytes(b"x")
    problems = verify(str(dest), lite_ckpt, sample=None).problems
    assert any(p.startswith(f"{key}: output is 10 bytes") for p in problems)
    assert "stray.tpx: output without a manifest record" in problems


def test_tar_and_zip_sources_restore_archive_paths(local_ray, lite_ckpt, codec, tmp_path):
    members = {f"dir/{i}/p{i}.jpg": photo(100 + i) for i in range(5)}
    tar_path = tmp_path / "batch.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in {**members, "../evil.jpg": photo(1)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    zip_path = zip_of({"z/a.png": photo(200, "PNG"), "z/b.jpg": photo(201), "z/bad.jpg": b"nope"}, tmp_path / "more.zip")
    dest, restored = tmp_path / "coded", tmp_path / "restored"
    cfg = BulkConfig(workers=2, batch_size=2)
    report = run_bulk("compress", [str(tar_path), str(zip_path)], str(dest), lite_ckpt, cfg)
    assert (report.done, report.failed, report.errors_by_reason) == (7, 2, {"not_image": 1, "unsafe_path": 1})
    assert (dest / "batch.tar.gz/dir/3/p3.jpg.tpx").read_bytes() == codec.compress(members["dir/3/p3.jpg"])
    run_bulk("decompress", [str(dest)], str(restored), lite_ckpt, cfg)
    assert {k for k in tree(restored) if k.endswith(".png")} == {
        *(f"batch.tar.gz/dir/{i}/p{i}.png" for i in range(5)), "more.zip/z/a.png", "more.zip/z/b.png"}


def _wds_shard(path, samples: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, data in samples.items():
            for ext, payload in (("jpg", data), ("json", json.dumps({"source": key}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_webdataset_shards_in_and_out(local_ray, lite_ckpt, codec, tmp_path):
    src = tmp_path / "shards"
    src.mkdir()
    samples = {f"s{i:03d}": photo(300 + i) for i in range(7)}
    _wds_shard(src / "train-000000.tar", dict(list(samples.items())[:4]))
    _wds_shard(src / "train-000001.tar", dict(list(samples.items())[4:]))
    dest = tmp_path / "coded"
    cfg = BulkConfig(workers=2, batch_size=2, source_format="webdataset", dest_format="webdataset", shard_size=3)
    report = run_bulk("compress", [str(src)], str(dest), lite_ckpt, cfg)
    assert (report.done, report.failed) == (7, 0)
    shards = sorted(p.name for p in dest.glob("*.tar"))
    assert shards == ["shard-000000-0000.tar", "shard-000000-0001.tar", "shard-000001-0000.tar"]
    first = (dest / shards[0]).read_bytes()
    with tarfile.open(dest / shards[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(names[0]).read())
        tpx = tar.extractfile(names[1]).read()
    assert meta["key"] == "train-000000.tar/s000.jpg" and tpx == codec.compress(samples["s000"])
    assert len(names) == 6 and names[1].endswith(".tpx")

    again = run_bulk("compress", [str(src)], str(dest), lite_ckpt, cfg)
    assert (again.coded, again.skipped) == (0, 7) and (dest / shards[0]).read_bytes() == first
    assert verify(str(dest), lite_ckpt, sample=None).ok

    restored = tmp_path / "restored"
    back = run_bulk("decompress", [str(dest)], str(restored), lite_ckpt, BulkConfig(workers=2))
    assert back.done == 7
    assert {k for k in tree(restored) if k.endswith(".png")} == {
        f"train-00000{int(i >= 4)}.tar/s{i:03d}.png" for i in range(7)}


def test_compress_at_an_effort_records_it_and_refuses_another_effort_into_the_same_dest(local_ray, tmp_path):
    """Encode effort through Ray: the bytes of the plain codec at that effort, `effort` in the manifest,
    the report and bulk.json; a re-run at another effort into the same destination is refused."""
    import pytest

    from texpress.codec.api import Codec
    from texpress.codec.shipped import by_name
    from texpress.errors import ConfigError

    shipped = by_name("lite-q1")
    if shipped is None:
        pytest.skip("no shipped models in this checkout")
    photos = make_store(tmp_path / "store", 2, bad=False)
    dest = tmp_path / "coded"
    cfg = BulkConfig(workers=1, max_pixels=MAX_PIXELS, effort=1)
    report = run_bulk("compress", [str(tmp_path / "store")], str(dest), shipped.path, cfg)
    assert (report.done, report.effort) == (2, 1)
    codec = Codec.from_checkpoint(shipped.path)
    for key, data in photos.items():
        assert (dest / f"{key}.tpx").read_bytes() == codec.compress(data, effort=1), key
    records = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert {r["effort"] for r in records if r["status"] == "done"} == {1}
    assert json.loads((dest / "bulk.json").read_text())["effort"] == 1
    with pytest.raises(ConfigError, match="effort 1, not 0"):
        run_bulk("compress", [str(tmp_path / "store")], str(dest), shipped.path, cfg.replace(effort=0))
