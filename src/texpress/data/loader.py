"""WebDataset loaders over the shards that `ingest` writes.

Training (`make_train_loader`): an endless stream of random 256x256 (patch_size) crops.
    shards are resampled with replacement from one seeded stream, which split_by_node and
    split_by_worker cut into disjoint parts (rank r of R takes every R-th shard, its DataLoader
    worker w of W every W-th of those) -> the samples of each shard -> a shuffle buffer of
    encoded samples -> decode, random crop, horizontal flip -> batches of (B, 3, P, P) float32
    in [0, 1]. The WebLoader's `with_epoch(batches_per_epoch)` makes every rank's epoch exactly
    batches_per_epoch batches long, so no rank runs out before another. Workers persist across
    epochs; each epoch continues with fresh seeds (seed, epoch, rank, worker), so a run is
    reproducible for a given seed, world size and worker count. `start_step` resumes that
    stream: a run restored at step s gets the batches s, s+1, ... of the uninterrupted run (the
    batches before it are skipped from the image headers, without decoding).
    Images whose shorter side is below patch_size are skipped, never padded (padding would
    teach the model and the discriminator borders that do not exist in photos); ingest with
    shard.min_side >= patch_size so that none are. If nothing but such images comes along,
    the loader raises instead of spinning.

Validation (`make_val_loader`): every sample exactly once across all ranks and workers, as
    (key, float32 tensor (1, 3, H, W) in [0, 1]). With S shards and G = ranks x workers reader
    slots, slot g = rank * W + worker reads shards g, g+G, ... when S >= G; otherwise every slot
    reads all shards in order and keeps the samples whose index i has i % G == g.
    max_side: images are centre-cropped (not resized: texture keeps its scale) to at most
    max_side x max_side.

Rank and world size come from the `rank`/`world_size` arguments, else from webdataset's
    rules (RANK/WORLD_SIZE in the environment, else torch.distributed when initialised), read
    once when the loader is made (in the training process, so spawned workers agree).

Shard URLs: local paths, fsspec URLs (opened in process) or `pipe:` commands (webdataset's
    gopen). `list_shards` gives local paths for local roots and
    `pipe:python -m texpress.data.fetch URL` for object stores, which plain webdataset reads too.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shlex
import sys
from itertools import count, islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.utils.data

from texpress.codec.imageio import normalise
from texpress.data import storage
from texpress.data.device_crops import centre_crop
from texpress.data.manifest import read_split_manifest
from texpress.errors import InputError

MAX_CONSECUTIVE_SKIPS = 1000


def list_shards(root: str, split: str, *, endpoint_url: str | None = None) -> list[str]:
    """Shard URLs of one split (from its manifest), usable by webdataset and by the loaders here."""
    manifest = read_split_manifest(root, split, endpoint_url)
    names = [s["name"] for s in manifest.get("shards", [])]
    if storage.is_local(root):
        base = Path(storage.local_path(root)).resolve() / split
        return [str(base / n) for n in names]
    endpoint = storage.endpoint_for(endpoint_url)
    cmd = f"{shlex.quote(sys.executable)} -m texpress.data.fetch"
    suffix = f" --endpoint-url {shlex.quote(endpoint)}" if endpoint else ""
    return [f"pipe:{cmd} {shlex.quote(storage.join(root, split, n))}{suffix}" for n in names]


# -- reading shards ----------------------------------------------------------------------------

def _open(url: str):
    if url.startswith("pipe:"):
        import webdataset as wds

        return wds.gopen(url, "rb")
    if storage.is_url(url) and not url.startswith("file://"):
        fs, path = storage.url_to_fs(url)
        return fs.open(path, "rb")
    return open(storage.local_path(url), "rb")


def _shard_samples(urls) -> Iterator[dict[str, Any]]:
    """Samples ({"__key__", ext: bytes, ...}) of each shard URL in turn."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    for url in urls:
        stream = _open(url)
        try:
            yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
            while stream.read(1 << 16):  # drain the tar padding so a pipe's command ends cleanly
                pass
        finally:
            stream.close()


def _image_bytes(sample: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    meta = json.loads(sample["json"]) if "json" in sample else {}
    ext = meta.get("ext")
    if ext in sample:
        return sample[ext], meta
    for key, value in sample.items():
        if not key.startswith("__") and key != "json":
            return value, meta
    raise InputError(f"sample {sample.get('__key__')} in {sample.get('__url__')} holds no image")


def _decode(data: bytes, meta: dict[str, Any]):
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    if meta.get("exif_transpose"):
        im = ImageOps.exif_transpose(im)
    return im


def _size(data: bytes, meta: dict[str, Any]) -> tuple[int, int]:
    """(width, height) as _decode would give it, from the header only."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if meta.get("exif_transpose") and im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees
            w, h = h, w
    return w, h


def _to_rgb_array(im) -> np.ndarray:
    if im.mode not in ("RGB", "L", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):

        return normalise(im).rgb
    return np.asarray(im.convert("RGB") if im.mode != "RGB" else im)


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        r, w = int(rank), int(world_size)
    elif rank is None and world_size is None:
        from webdataset.utils import pytorch_worker_info

        r, w, _, _ = pytorch_worker_info()
    else:
        raise ValueError("give both rank and world_size, or neither")
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank {r} is not in a world of size {w}")
    return r, w


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


# -- training ----------------------------------------------------------------------------------

def split_by_node(src, rank: int, world_size: int):
    """webdataset's split_by_node with the rank fixed when the loader was made."""
    return islice(src, rank, None, world_size) if world_size > 1 else src


def resampled_shards(urls: list[str], seed: int, epoch: int):
    """webdataset's resampled shard stream: endless, with replacement, one seeded stream for all ranks."""
    rng = random.Random(_seed(seed, epoch, -1))
    return ({"url": urls[rng.randrange(len(urls))]} for _ in count())


def _collate(crops: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, P, P) float32 in [0, 1], converted and transposed in one pass per crop.

    In a DataLoader worker the batch is allocated in shared memory, as torch's default_collate
    does, so handing it to the training process costs no extra copy.
    """
    p = crops[0].shape[0]
    shape = (len(crops), 3, p, crops[0].shape[1])
    if torch.utils.data.get_worker_info() is not None:
        shm = torch.UntypedStorage._new_shared(int(np.prod(shape)) * 4)
        out = torch.empty(0, dtype=torch.float32).set_(shm).view(shape)
    else:
        out = torch.empty(shape, dtype=torch.float32)
    for i, crop in enumerate(crops):
        out[i].copy_(torch.from_numpy(crop).permute(2, 0, 1))
    return out.mul_(1.0 / 255.0)


class TrainStream(torch.utils.data.IterableDataset):
    """The per-worker pipeline (an IterableDataset); each __iter__ is one more epoch."""

    def __init__(self, urls: list[str], patch_size: int, batch_size: int, shuffle_buffer: int,
                 seed: int, rank: int, world_size: int, start_epoch: int = 0, skip_batches: int = 0) -> None:
        self.urls = list(urls)
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_epoch = start_epoch
        self.skip_batches = skip_batches  # of this rank's batches in start_epoch (a resumed run)
        self.epoch = start_epoch - 1  # counted where the iteration runs (workers persist across epochs)

    def __iter__(self):
        from webdataset.filters import _batched, _shuffle

        self.epoch += 1
        worker, num_workers = _worker()
        skip = 0
        if self.epoch == self.start_epoch and self.skip_batches:
            # The DataLoader takes batch i of an epoch from its worker i % W, starting at worker 0:
            # resumed at batch s, its worker k plays the part of worker (k + s) % W and skips the
            # batches that worker had delivered before s.
            worker = (worker + self.skip_batches) % num_workers
            skip = len(range(worker, self.skip_batches, num_workers)) * self.batch_size
        rng = random.Random(_seed(self.seed, self.epoch, self.rank, worker))
        urls = resampled_shards(self.urls, self.seed, self.epoch)
        urls = split_by_node(urls, self.rank, self.world_size)
        urls = islice(urls, worker, None, num_workers) if num_workers > 1 else urls  # wds.split_by_worker
        samples = _shard_samples(u["url"] for u in urls)
        samples = _shuffle(samples, bufsize=self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)
        crops = self._crops(samples, rng, skip)
        return _batched(crops, self.batch_size, collation_fn=_collate, partial=False)

    def _crops(self, samples, rng: random.Random, skip: int = 0) -> Iterator[np.ndarray]:
        """Random crops; the first `skip` are drawn (same random numbers) but not decoded or yielded."""
        p = self.patch_size
        skipped = 0
        for sample in samples:
            data, meta = _image_bytes(sample)
            if skip:
                w, h = _size(data, meta)
                if w >= p and h >= p:
                    rng.randrange(w - p + 1), rng.randrange(h - p + 1), rng.random()
                    skip -= 1
                continue
            im = _decode(data, meta)
            w, h = im.size
            if w < p or h < p:
                skipped += 1
                if skipped >= MAX_CONSECUTIVE_SKIPS:
                    raise InputError(f"{skipped} training images in a row are smaller than the patch size {p}; "
                                     f"ingest with shard.min_side >= {p}")
                continue
            skipped = 0
            x, y = rng.randrange(w - p + 1), rng.randrange(h - p + 1)
            arr = _to_rgb_array(im.crop((x, y, x + p, y + p)))
            if rng.random() < 0.5:
                arr = arr[:, ::-1]
            yield np.array(arr)  # writable and contiguous (Pillow's arrays are read-only views)


def make_train_loader(shards: list[str], *, patch_size: int, batch_size: int, num_workers: int = 2,
                      shuffle_buffer: int = 256, batches_per_epoch: int, seed: int = 0,
                      rank: int | None = None, world_size: int | None = None, start_step: int = 0):
    """Endless random crops, exactly `batches_per_epoch` batches of (B, 3, P, P) float32 per epoch.

    start_step: continue the stream of this seed at that batch (a resumed run sees the batches the
    uninterrupted run would have seen)."""
    import webdataset as wds

    if not shards:
        raise InputError("no training shards (is the train split empty?)")
    if batches_per_epoch < 1 or batch_size < 1 or patch_size < 1:
        raise ValueError("patch_size, batch_size and batches_per_epoch must be positive")
    r, w = _resolve_rank(rank, world_size)
    if start_step < 0:
        raise ValueError("start_step must not be negative")
    dataset = TrainStream(shards, patch_size, batch_size, shuffle_buffer, seed, r, w,
                          start_epoch=start_step // batches_per_epoch, skip_batches=start_step % batches_per_epoch)
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=num_workers,
                           persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers > 0 else None)
    loader = loader.with_epoch(batches_per_epoch).with_length(batches_per_epoch, silent=True)
    offset = start_step % batches_per_epoch
    return _FirstEpochCut(loader, batches_per_epoch - offset) if offset else loader


class _FirstEpochCut:
    """A loader whose first epoch is cut to the batches a resumed run has left of it."""

    def __init__(self, loader, first: int) -> None:
        self.loader = loader
        self.first: int | None = first

    def __iter__(self):
        if self.first is None:
            return iter(self.loader)
        first, self.first = self.first, None
        return islice(iter(self.loader), first)

    def __len__(self) -> int:
        return len(self.loader)


# -- validation --------------------------------------------------------------------------------

class ValStream(torch.utils.data.IterableDataset):
    """Every validation sample once across ranks x workers (see the module docstring)."""

    def __init__(self, urls: list[str], rank: int, world_size: int, max_side: int | None) -> None:
        self.urls = list(urls)
        self.rank = rank
        self.world_size = world_size
        self.max_side = max_side

    def __iter__(self):
        worker, num_workers = _worker()
        slots = self.world_size * num_workers
        slot = self.rank * num_workers + worker
        if len(self.urls) >= slots:
            urls, mine = self.urls[slot::slots], (lambda i: True)
        else:
            urls, mine = self.urls, (lambda i: i % slots == slot)
        for i, sample in enumerate(_shard_samples(urls)):
            if not mine(i):
                continue
            data, meta = _image_bytes(sample)
            arr = centre_crop(_to_rgb_array(_decode(data, meta)), self.max_side)
            image = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float().div_(255.0)
            yield sample["__key__"], image.unsqueeze(0).contiguous()


def make_val_loader(shards: list[str], *, num_workers: int = 0, max_side: int | None = None,
                    rank: int | None = None, world_size: int | None = None):
    """(key, image (1, 3, H, W) float32 in [0, 1]) for this rank's share of the validation samples."""
    r, w = _resolve_rank(rank, world_size)
    dataset = ValStream(shards, r, w, max_side)
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
