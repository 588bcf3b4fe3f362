"""What a training run reads: endless batches from a step on, the validation images, and the
version of the data (part of the run's identity). Both trainers take their inputs from here: the
Ray workers from the shards, the single-process trainer from the shards or a folder of photos
decoded once onto the device. webdataset is imported only when shards are read."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterator

import torch

from texpress.data.config import LoaderConfig
from texpress.data.device_crops import DeviceCrops, folder_version, val_images
from texpress.data.loader import list_shards, make_train_loader, make_val_loader
from texpress.data.manifest import dataset_version
from texpress.errors import ConfigError, InputError
from texpress.train.step_loop import say


def data_version(images: Path | None, shards: str | None) -> str:
    """The photos folder's content hash, else the shards' dataset version."""
    if images is not None:
        return f"folder:{folder_version(images)}"
    return dataset_version(shards)


def check_inputs(images: Path | None, shards: str | None, out_dir: Path) -> None:
    """One of --images and --shards, usable, and an output path that can be a folder."""
    if (images is None) == (shards is None):
        raise ConfigError("give one of --images (a folder of photos) or --shards (a texpress dataset)")
    if images is not None and not Path(images).is_dir():
        raise InputError(f"{images}: no such folder of images")
    if shards is not None and not list_shards(str(shards), "train"):
        raise InputError(f"{shards}: no training shards")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output exists and is not a folder")


def shard_batches(shards: str, loader_cfg: LoaderConfig, *, seed: int, start_step: int, rank: int = 0,
                  world: int = 1) -> Iterator[torch.Tensor]:
    """This rank's endless batches of the shards' train split, continuing the sample stream at start_step."""
    loader = make_train_loader(list_shards(shards, "train"), patch_size=loader_cfg.patch_size,
                               batch_size=loader_cfg.batch_size, num_workers=loader_cfg.num_workers,
                               shuffle_buffer=loader_cfg.shuffle_buffer, batches_per_epoch=loader_cfg.batches_per_epoch,
                               seed=seed, rank=rank, world_size=world, start_step=start_step)
    while True:  # every rank gets batches_per_epoch batches per epoch; epochs go on
        yield from loader


def shard_val_items(shards: str, loader_cfg: LoaderConfig, limit: int) -> list:
    """Up to `limit` validation images of the shards' val split (none when there is no val split)."""
    val_shards = list_shards(shards, "val") if limit > 0 else []
    if not val_shards:
        return []
    return list(islice(make_val_loader(val_shards, max_side=loader_cfg.val_max_side, rank=0, world_size=1), limit))


def photo_inputs(images: Path, val: Path | None, loader_cfg: LoaderConfig, *, device: torch.device, seed: int,
                 start_step: int, val_limit: int):
    """(batches from start_step on, validation items) of a folder of photos cropped on the device."""
    crops, skipped = DeviceCrops.from_folder(images, device=device, patch_size=loader_cfg.patch_size,
                                             batch_size=loader_cfg.batch_size, seed=seed)
    say(f"{len(crops.images)} training photos on {device} ({crops.megabytes:.0f} MB)"
        + (f", {len(skipped)} skipped (e.g. {skipped[0][0].name}: {skipped[0][1]})" if skipped else ""))
    items = val_images(val, limit=val_limit, max_side=loader_cfg.val_max_side) if val else []
    return crops.stream(start_step), items
