"""Object storage against a real S3-compatible server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import io
import socket
import tarfile
from collections import Counter

import pytest

from texpress.data import manifest as mf
from texpress.data.config import PrepareConfig, ShardConfig
from texpress.data.ingest import ingest
from texpress.data.loader import list_shards, make_train_loader, make_val_loader
from texpress.data.prepare import gather

from .conftest import image_bytes


@pytest.fixture(scope="module")
def s3():
    """(endpoint URL, boto3 client) of a moto S3 server on a free port, with test credentials."""
    server_mod = pytest.importorskip("moto.server")
    import boto3

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(k, v)
        for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "TEXPRESS_S3_ENDPOINT_URL", "AWS_PROFILE"):
            mp.delenv(k, raising=False)
        client = boto3.client("s3", endpoint_url=endpoint)
        try:
            yield endpoint, client
        finally:
            server.stop()


def _upload_photos(client, bucket: str, prefix: str) -> None:
    client.create_bucket(Bucket=bucket)
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"{prefix}/img{i}.jpg", Body=image_bytes(300, 280, seed=i))
    client.put_object(Bucket=bucket, Key=f"{prefix}/more/dup.jpg", Body=image_bytes(300, 280, seed=0))
    client.put_object(Bucket=bucket, Key=f"{prefix}/more/readme.txt", Body=b"not an image")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = image_bytes(290, 300, seed=9)
        info = tarfile.TarInfo("inner/a.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../evil.jpg")
        evil.size = len(data)
        tar.addfile(evil, io.BytesIO(data))
    client.put_object(Bucket=bucket, Key=f"{prefix}/batch.tar.gz", Body=buf.getvalue())


def test_ingest_from_an_s3_prefix(s3, tmp_path):
    endpoint, client = s3
    _upload_photos(client, "photos", "incoming")
    out = tmp_path / "ds"
    result = ingest(["s3://photos/incoming", "s3://photos/nothing-here"], out, ShardConfig(min_side=256),
                    endpoint_url=endpoint)
    m = result.manifest
    assert (m["seen"], m["accepted"], m["duplicates"], m["rejected"]) == (8, 4, 1, 3)
    assert m["rejected_by_reason"] == {"missing": 1, "not_image": 1, "unsafe_path": 1}
    sources = set()
    for shard in out.glob("*/shard-*.tar"):
        with tarfile.open(shard) as tar:
            sources |= {n for n in tar.getnames() if n.endswith(".json")}
    assert len(sources) == 4
    assert mf.verify(out) == []


def test_endpoint_from_the_environment(s3, tmp_path, monkeypatch):
    endpoint, client = s3
    client.create_bucket(Bucket="envbucket")
    client.put_object(Bucket="envbucket", Key="a/x.jpg", Body=image_bytes(300, 300, seed=42))
    monkeypatch.setenv("TEXPRESS_S3_ENDPOINT_URL", endpoint)
    m = ingest(["s3://envbucket/a/x.jpg"], tmp_path / "ds", ShardConfig(min_side=256)).manifest
    assert m["accepted"] == 1


def test_shards_on_s3_feed_the_loaders_and_plain_webdataset(s3, tmp_path):
    import webdataset as wds

    from texpress.data import storage

    endpoint, client = s3
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"p{i}.jpg").write_bytes(image_bytes(280, 260, seed=500 + i))
    local = tmp_path / "ds"
    ingest([str(src)], local, ShardConfig(min_side=256, val_frac=0.4, test_frac=0.0, max_samples=2))
    client.create_bucket(Bucket="shards")
    fs, _ = storage.url_to_fs("s3://shards", endpoint)
    fs.put(str(local), "shards/v1", recursive=True)
    root = "s3://shards/v1"

    assert mf.dataset_version(root, endpoint) == mf.dataset_version(local)
    val = list_shards(root, "val", endpoint_url=endpoint)
    assert val and all(u.startswith("pipe:") and "texpress.data.fetch" in u for u in val)
    local_keys = sorted(k for k, _ in make_val_loader(list_shards(str(local), "val")))
    seen = Counter(k for rank in range(2) for k, _ in make_val_loader(val, rank=rank, world_size=2))
    assert sorted(seen) == local_keys and set(seen.values()) == {1}
    # the URLs work in webdataset itself, too
    plain = [s["__key__"] for s in wds.WebDataset(val, shardshuffle=False, empty_check=False)]
    assert sorted(plain) == local_keys
    train = make_train_loader(list_shards(root, "train", endpoint_url=endpoint), patch_size=128, batch_size=2,
                              num_workers=0, shuffle_buffer=2, batches_per_epoch=2)
    assert [tuple(b.shape) for b in train] == [(2, 3, 128, 128)] * 2


def test_prepare_gathers_an_s3_prefix(s3, tmp_path):
    endpoint, client = s3
    client.create_bucket(Bucket="raw")
    client.put_object(Bucket="raw", Key="store/a.jpg", Body=b"a")
    client.put_object(Bucket="raw", Key="store/deep/b.tar", Body=b"b")
    counts = gather(PrepareConfig(sources=("s3://raw/store",), endpoint_url=endpoint), tmp_path / "raw")
    assert counts == {"store": 2}
    assert (tmp_path / "raw/store/a.jpg").read_bytes() == b"a"
    assert (tmp_path / "raw/store/deep/b.tar").read_bytes() == b"b"
