"""Writing outputs safely, for every layer: an output appears whole or not at all, and a file that
stands where a folder must be made is found before the long work starts."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(target: Path, data: bytes | None = None, *, writer=None) -> None:
    """Write to a hidden temporary name beside the target and rename it into place when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        if writer is not None:
            writer(tmp)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def file_in_the_way(path: str | Path) -> Path | None:
    """The file (not folder) among PATH's parents that would stop PATH from being written, if any:
    checked before long work, so that the work is not lost at the last step."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
