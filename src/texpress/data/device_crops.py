"""Training crops from a plain folder of photos, cut on the training device.

For one GPU a WebDataset pipeline with CPU decoding is the bottleneck (a GPU trains a small codec
faster than a few cores decode JPEGs). Here every photo is decoded once (threads) and kept on the
device as a uint8 tensor (850 photos with a 288-px short side: about 210 MB); each batch is cut
there: random crops, random horizontal flips, then float in [0, 1].

The order is a pure function of (seed, step): the photos are visited in a seeded permutation per
epoch, and the crop offsets and flips of step s come from a generator seeded with (seed, s). A run
resumed at step s therefore gets exactly the batches the uninterrupted run would have got. Needs
only torch, numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from texpress.codec.imageio import IMAGE_SUFFIXES
from texpress.errors import InputError


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files under `folder` (recursive), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: no images (expected {', '.join(sorted(IMAGE_SUFFIXES)[:4])}, ...)")
    return files


def folder_version(folder: str | os.PathLike) -> str:
    """A short hash of the image files' relative paths and sizes (what identifies the training data)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in image_files(folder):
        h.update(f"{p.relative_to(folder)}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def read_rgb(path: Path) -> np.ndarray | None:
    """HxWx3 uint8 (EXIF orientation applied), or None when the file is not a readable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))  # writable, for torch.from_numpy
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def centre_crop(arr: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None:
        return arr
    h, w = arr.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    y, x = (h - ch) // 2, (w - cw) // 2
    return arr[y:y + ch, x:x + cw]


class DeviceCrops:
    """Photos as uint8 (3, H, W) tensors on one device; `batch(step)` cuts (B, 3, P, P) float crops."""

    def __init__(self, images: list[torch.Tensor], *, patch_size: int, batch_size: int, seed: int) -> None:
        if not images:
            raise InputError("no training images")
        self.images = images
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, *, device: torch.device | str, patch_size: int,
                    batch_size: int, seed: int, threads: int = 8) -> tuple["DeviceCrops", list[tuple[Path, str]]]:
        """(crops, skipped files with the reason): unreadable files and photos smaller than the patch
        are left out."""
        files = image_files(folder)
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # Pillow decodes without the GIL
            arrays = list(pool.map(read_rgb, files))
        images, skipped = [], []
        for path, arr in zip(files, arrays):
            if arr is None:
                skipped.append((path, "not a readable image"))
            elif min(arr.shape[:2]) < patch_size:
                skipped.append((path, f"smaller than the {patch_size}-px crop"))
            else:
                images.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(device))
        if not images:
            raise InputError(f"{folder}: no image with both sides >= the {patch_size}-px crop")
        return cls(images, patch_size=patch_size, batch_size=batch_size, seed=seed), skipped

    @property
    def megabytes(self) -> float:
        return sum(t.numel() for t in self.images) / 1e6

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(len(self.images)))
            random.Random(_seed(self.seed, "epoch", epoch)).shuffle(order)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = order
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        """The photos of batch `step`: positions step*B ... of the per-epoch permutations."""
        n = len(self.images)
        first = step * self.batch_size
        return [self._perm(p // n)[p % n] for p in range(first, first + self.batch_size)]

    def batch(self, step: int) -> torch.Tensor:
        """(B, 3, P, P) float32 in [0, 1] on the images' device."""
        p = self.patch_size
        rng = random.Random(_seed(self.seed, "crop", step))
        crops, flips = [], []
        for i in self.indices(step):
            img = self.images[i]
            h, w = img.shape[-2:]
            y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
            crops.append(img[:, y:y + p, x:x + p])
            if rng.random() < 0.5:
                flips.append(len(crops) - 1)
        out = torch.stack(crops)
        if flips:
            out[flips] = out[flips].flip(-1)
        return out.float().mul_(1.0 / 255.0)

    def stream(self, start_step: int = 0) -> Iterator[torch.Tensor]:
        """Batches start_step, start_step + 1, ... (endless)."""
        step = start_step
        while True:
            yield self.batch(step)
            step += 1


def val_images(folder: str | os.PathLike, *, limit: int, max_side: int | None) -> list[tuple[str, torch.Tensor]]:
    """Up to `limit` validation photos as (name, (1, 3, H, W) float32 in [0, 1]) on the CPU,
    centre-cropped to at most max_side."""
    items = []
    for path in image_files(folder):
        if len(items) >= limit:
            break
        arr = read_rgb(path)
        if arr is None:
            continue
        arr = np.ascontiguousarray(centre_crop(arr, max_side))
        items.append((path.name, torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)))
    return items
