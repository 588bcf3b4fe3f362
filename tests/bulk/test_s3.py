"""Bulk jobs against a real S3-compatible server (moto's server mode on 127.0.0.1), as source and destination."""

from __future__ import annotations

import io
import json
import tarfile

from texpress.bulk.config import BulkConfig
from texpress.bulk.job import run_bulk
from texpress.bulk.verify import verify
from tests.data.test_s3 import s3  # noqa: F401  (the moto server fixture of the data tests)

from .conftest import photo, tree


def _objects(client, bucket: str, prefix: str) -> dict[str, bytes]:
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k[len(prefix) + 1:]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_s3_source_and_destination(s3, local_ray, lite_ckpt, codec, tmp_path):  # noqa: F811  (s3 first: Ray's workers inherit its credentials)
    endpoint, client = s3
    client.create_bucket(Bucket="src")
    client.create_bucket(Bucket="dst")
    photos = {f"day{i % 2}/p{i}.jpg": photo(400 + i) for i in range(6)}
    for key, data in photos.items():
        client.put_object(Bucket="src", Key=f"store/{key}", Body=data)
    client.put_object(Bucket="src", Key="store/bad.jpg", Body=b"garbage")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner/t.jpg")
        data = photo(450)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    client.put_object(Bucket="src", Key="store/batch.tar.gz", Body=buf.getvalue())

    cfg = BulkConfig(workers=2, batch_size=2, files_per_task=4, endpoint_url=endpoint)
    report = run_bulk("compress", ["s3://src/store"], "s3://dst/coded", lite_ckpt, cfg)
    assert (report.done, report.failed, report.errors_by_reason) == (7, 1, {"not_image": 1})
    objects = _objects(client, "dst", "coded")
    assert set(objects) == {f"{k}.tpx" for k in photos} | {"batch.tar.gz/inner/t.jpg.tpx", "manifest.jsonl",
                                                           "errors.jsonl", "bulk.json", "report.json"}
    assert objects["day1/p1.jpg.tpx"] == codec.compress(photos["day1/p1.jpg"])
    assert json.loads(objects["errors.jsonl"])["key"] == "bad.jpg"

    again = run_bulk("compress", ["s3://src/store"], "s3://dst/coded", lite_ckpt, cfg)
    assert (again.coded, again.skipped) == (0, 7)
    assert verify("s3://dst/coded", lite_ckpt, sample=3, endpoint_url=endpoint).ok

    restored = tmp_path / "restored"
    back = run_bulk("decompress", ["s3://dst/coded"], str(restored), lite_ckpt, cfg)
    assert back.done == 7
    assert {k for k in tree(restored) if k.endswith(".png")} == {
        *(k.replace(".jpg", ".png") for k in photos), "batch.tar.gz/inner/t.png"}
