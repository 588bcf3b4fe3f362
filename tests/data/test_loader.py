"""Loaders: DDP-style ranks x DataLoader workers, equal epochs, exactly-once validation."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texpress.data.config import ShardConfig
from texpress.data.ingest import ingest
from texpress.data.loader import (centre_crop, list_shards, make_train_loader, make_val_loader,
                                  resampled_shards, split_by_node)
from texpress.errors import InputError

from .conftest import image_bytes


def _keys(root: Path, split: str) -> list[str]:
    keys = []
    for shard in list_shards(str(root), split):
        with tarfile.open(shard) as tar:
            keys += [n.split(".")[0] for n in tar.getnames() if n.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """14 photos; val gets several single-sample shards, train several shards."""
    src = tmp_path_factory.mktemp("src")
    for i in range(14):
        (src / f"p{i:02d}.jpg").write_bytes(image_bytes(200 + 10 * i, 180 + 5 * i, seed=1000 + i))
    out = tmp_path_factory.mktemp("ds") / "shards"
    ingest([str(src)], out, ShardConfig(min_side=128, val_frac=0.45, test_frac=0.0, max_samples=1))
    return out


def test_list_shards_local(dataset):
    shards = list_shards(str(dataset), "train")
    assert shards and all(Path(s).is_absolute() and Path(s).is_file() for s in shards)
    assert shards == sorted(shards)
    with pytest.raises(InputError):
        list_shards(str(dataset.parent / "nothing-here"), "train")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_loader_two_ranks_get_equal_epochs(dataset, num_workers):
    shards = list_shards(str(dataset), "train")
    firsts = []
    for rank in range(2):
        loader = make_train_loader(shards, patch_size=96, batch_size=3, num_workers=num_workers,
                                   shuffle_buffer=4, batches_per_epoch=4, seed=7, rank=rank, world_size=2)
        assert len(loader) == 4
        epochs = []
        for _ in range(2):
            batches = list(loader)
            assert len(batches) == 4
            for b in batches:
                assert b.shape == (3, 3, 96, 96) and b.dtype == torch.float32 and b.is_contiguous()
                assert 0.0 <= float(b.min()) and float(b.max()) <= 1.0
            epochs.append(torch.stack(batches))
        assert not torch.equal(epochs[0], epochs[1])  # a new epoch is not a replay
        firsts.append(epochs[0])
    assert not torch.equal(firsts[0], firsts[1])  # ranks see different data
    # same seed, rank and worker count: the same stream
    again = make_train_loader(shards, patch_size=96, batch_size=3, num_workers=num_workers, shuffle_buffer=4,
                              batches_per_epoch=4, seed=7, rank=0, world_size=2)
    assert torch.equal(torch.stack(list(again)), firsts[0])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumed_stream_continues_the_same_sample_order(dataset, num_workers):
    """start_step=s gives batches s, s+1, ... of the uninterrupted stream, across epoch boundaries."""
    shards = list_shards(str(dataset), "train")

    def stream(start: int):
        loader = make_train_loader(shards, patch_size=64, batch_size=2, num_workers=num_workers, shuffle_buffer=4,
                                   batches_per_epoch=3, seed=11, rank=1, world_size=2, start_step=start)
        while True:
            yield from loader

    full = list(islice(stream(0), 8))
    for start in (1, 2, 3, 5):
        resumed = list(islice(stream(start), 8 - start))
        assert all(torch.equal(a, b) for a, b in zip(full[start:], resumed, strict=True)), start
    assert not torch.equal(full[0], full[3])


def test_resampled_shards_are_partitioned_by_node_and_worker(monkeypatch):
    import webdataset as wds

    urls = [f"s{i}" for i in range(5)]
    common = [u["url"] for u in islice(resampled_shards(urls, seed=3, epoch=0), 40)]
    assert set(common) == set(urls)
    parts = {}
    for rank in range(2):
        for worker in range(2):
            monkeypatch.setenv("WORKER", str(worker))
            monkeypatch.setenv("NUM_WORKERS", "2")
            stream = wds.split_by_worker(split_by_node(resampled_shards(urls, seed=3, epoch=0), rank, 2))
            parts[rank, worker] = [u["url"] for u in islice(stream, 10)]
    for (rank, worker), got in parts.items():
        assert got == common[rank + 2 * worker::4]  # disjoint positions of one stream


def test_images_smaller_than_the_patch_are_skipped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    for i in range(6):
        buf = io.BytesIO()
        red.save(buf, format="PNG", compress_level=i)
        (src / f"small{i}.png").write_bytes(buf.getvalue())
        (src / f"big{i}.jpg").write_bytes(image_bytes(160, 160, seed=i))
    ingest([str(src)], tmp_path / "ds", ShardConfig(min_side=32, val_frac=0, test_frac=0, max_samples=3))
    loader = make_train_loader(list_shards(str(tmp_path / "ds"), "train"), patch_size=64, batch_size=4,
                               num_workers=0, shuffle_buffer=2, batches_per_epoch=6)
    for batch in loader:
        reds = (batch[:, 0] > 0.99) & (batch[:, 1] < 0.01) & (batch[:, 2] < 0.01)
        assert not bool(reds.flatten(1).all(1).any())  # no crop is a (padded) small red image
    only_small = tmp_path / "only_small"
    only_small.mkdir()
    (only_small / "a.png").write_bytes((src / "small0.png").read_bytes())
    ingest([str(only_small)], tmp_path / "ds2", ShardConfig(min_side=32, val_frac=0, test_frac=0))
    loader = make_train_loader(list_shards(str(tmp_path / "ds2"), "train"), patch_size=64, batch_size=2,
                               num_workers=0, batches_per_epoch=1)
    with pytest.raises(InputError, match="smaller than the patch size"):
        next(iter(loader))


def _val_keys(shards, world_size, num_workers, **kw):
    seen = Counter()
    for rank in range(world_size):
        for key, image in make_val_loader(shards, num_workers=num_workers, rank=rank, world_size=world_size, **kw):
            assert image.ndim == 4 and image.shape[:2] == (1, 3) and image.dtype == torch.float32
            seen[key] += 1
    return seen


def test_val_loader_reads_each_sample_once_across_2_ranks_x_2_workers(dataset, tmp_path):
    shards = list_shards(str(dataset), "val")
    expected = _keys(dataset, "val")
    assert len(shards) >= 4  # shard-level split
    seen = _val_keys(shards, world_size=2, num_workers=2)
    assert sorted(seen) == sorted(expected) and set(seen.values()) == {1}
    # one shard only: the split happens sample by sample
    src_shards = [str(p) for p in sorted(dataset.glob("val/*.tar"))]
    merged = tmp_path / "val-000000.tar"
    with tarfile.open(merged, "w") as out:
        for s in src_shards:
            with tarfile.open(s) as tar:
                for m in tar.getmembers():
                    out.addfile(m, tar.extractfile(m))
    seen = _val_keys([str(merged)], world_size=2, num_workers=2)
    assert sorted(seen) == sorted(expected) and set(seen.values()) == {1}


def test_val_loader_centre_crops_to_max_side(dataset):
    shards = list_shards(str(dataset), "val")
    full = dict(make_val_loader(shards))
    cropped = dict(make_val_loader(shards, max_side=100))
    assert full.keys() == cropped.keys()
    for key, image in cropped.items():
        h, w = full[key].shape[2:]
        assert image.shape[2:] == (min(h, 100), min(w, 100))
        y, x = (h - image.shape[2]) // 2, (w - image.shape[3]) // 2
        assert torch.equal(image, full[key][:, :, y:y + image.shape[2], x:x + image.shape[3]])
    assert centre_crop(np.zeros((5, 9, 3)), 4).shape == (4, 4, 3)


def test_rank_and_world_size_come_from_the_environment(dataset, monkeypatch):
    shards = list_shards(str(dataset), "val")
    explicit = [k for k, _ in make_val_loader(shards, rank=1, world_size=2)]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert [k for k, _ in make_val_loader(shards)] == explicit
    with pytest.raises(ValueError):
        make_val_loader(shards, rank=2, world_size=2)


def _ddp_worker(rank: int, world_size: int, root: str, port: int, results: str) -> None:
    """One DDP rank: rank and world size come from torch.distributed (as in a Ray Train worker)."""
    import json
    import os

    import torch.distributed as dist

    os.environ.pop("RANK", None)
    os.environ.pop("WORLD_SIZE", None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        keys = [k for k, _ in make_val_loader(list_shards(root, "val"))]
        loader = make_train_loader(list_shards(root, "train"), patch_size=64, batch_size=2, num_workers=0,
                                   shuffle_buffer=4, batches_per_epoch=3)
        batches = [len(list(loader)) for _ in range(2)]
        # every rank must be able to take part in the same number of collective steps
        for _ in range(sum(batches)):
            dist.all_reduce(torch.ones(1))
        Path(results, f"{rank}.json").write_text(json.dumps({"keys": keys, "batches": batches}))
    finally:
        dist.destroy_process_group()


@pytest.mark.heavy
def test_ranks_from_torch_distributed(dataset, tmp_path):
    import json
    import socket

    import torch.multiprocessing as mp

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    mp.spawn(_ddp_worker, args=(2, str(dataset), port, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert [r["batches"] for r in results] == [[3, 3], [3, 3]]
    keys = results[0]["keys"] + results[1]["keys"]
    assert sorted(keys) == sorted(_keys(dataset, "val")) and len(set(keys)) == len(keys)
    assert results[0]["keys"] and results[1]["keys"]
