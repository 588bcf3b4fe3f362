"""The images an evaluation reads: image files, folders of them, and tar shards (the dataset's
`data/shards/<split>/shard-*.tar`, where each sample holds the original encoded bytes under its
extension key beside a `json` record).

Listing is cheap and never decodes; each item decodes on demand (through texpress.codec.imageio)
so that an unreadable file is reported by the batch and the rest go on.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from texpress.codec.imageio import IMAGE_SUFFIXES, load_image
from texpress.data.validate import IMAGE_EXTS as SHARD_IMAGE_EXTS
from texpress.errors import InputError

# common image file names, and every extension the dataset's shards store images under
IMAGE_EXTENSIONS = IMAGE_SUFFIXES | {f".{e}" for e in SHARD_IMAGE_EXTS}
TAR_EXTENSIONS = (".tar",)


@dataclass
class ImageItem:
    """One image to evaluate: a unique display name and a function that returns its 8-bit RGB pixels."""

    name: str
    read: Callable[[], np.ndarray]


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _file_item(path: Path, name: str) -> ImageItem:
    return ImageItem(name, lambda: load_image(path).rgb)


def _tar_items(path: Path) -> list[ImageItem]:
    """One item per sample of a shard: the member named <key>.<image extension>."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m.name for m in tar.getmembers() if m.isfile() and _is_image_name(m.name)]
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{path}: unreadable tar ({exc})") from None

    def reader(member: str) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            try:
                with tarfile.open(path, "r:*") as tar:
                    f = tar.extractfile(member)
                    if f is None:
                        raise InputError(f"{member} is not a regular file")
                    data = f.read()
            except (tarfile.TarError, OSError, KeyError) as exc:
                raise InputError(f"unreadable tar member ({exc})") from None
            return load_image(data).rgb

        return read

    return [ImageItem(f"{path.name}/{m}", reader(m)) for m in members]


def list_images(inputs: list[str | os.PathLike]) -> tuple[list[ImageItem], list[tuple[str, str]]]:
    """(items, problems): images of every input in order; inputs that cannot be listed as problems.

    A folder contributes its image files and .tar shards (sorted, not recursive; other files such as
    manifests are skipped). Names are made unique by suffixing #2, #3 ..."""
    items: list[ImageItem] = []
    problems: list[tuple[str, str]] = []
    for raw in inputs:
        path = Path(raw)
        try:
            if path.is_dir():
                for child in sorted(path.iterdir()):
                    if child.is_file() and child.suffix.lower() in TAR_EXTENSIONS:
                        items += _tar_items(child)
                    elif child.is_file() and _is_image_name(child.name):
                        items.append(_file_item(child, child.name))
            elif path.suffix.lower() in TAR_EXTENSIONS and path.is_file():
                items += _tar_items(path)
            elif path.exists():
                items.append(_file_item(path, path.name))
            else:
                raise InputError("no such file or directory")
        except InputError as exc:
            problems.append((str(raw), str(exc)))
    seen: dict[str, int] = {}
    for item in items:
        n = seen.get(item.name, 0) + 1
        seen[item.name] = n
        if n > 1:
            item.name = f"{item.name}#{n}"
    return items, problems


def centre_crop(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Centre crop to (width, height); a side already smaller than asked is kept whole."""
    if size is None:
        return rgb
    w, h = min(size[0], rgb.shape[1]), min(size[1], rgb.shape[0])
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top: top + h, left: left + w])
