"""Deterministic WebDataset shard writing, one ShardWriter per split.

Samples are written with webdataset's ShardWriter/TarWriter and fixed tar metadata (mtime 0,
uid/gid 0, empty user and group names, mode 0444, USTAR format, entries of a sample sorted by
extension), so the same samples in the same order give byte-identical shards.

A shard is closed before a sample would take it past `max_samples` samples or `max_bytes` bytes
(the real size on disk, tar headers and padding included); a single sample larger than
`max_bytes` gets a shard of its own.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

SHARD_PATTERN = "shard-%06d.tar"
_BLOCK = 512
_RECORD = 20 * _BLOCK  # tarfile pads the archive to a whole record


def _entry_bytes(size: int) -> int:
    return _BLOCK + -(-size // _BLOCK) * _BLOCK


def tar_bytes(entries_bytes: int) -> int:
    """Size on disk of a tar whose entries (headers + padded data) take `entries_bytes`."""
    return -(-(entries_bytes + 2 * _BLOCK) // _RECORD) * _RECORD


def sample_key(name: str, sha256_hex: str) -> str:
    """A readable, unique key without dots: the file's stem, sanitised, and 12 hex of the hash."""
    stem = name.rsplit("/", 1)[-1]
    stem = stem.split(".", 1)[0] if not stem.startswith(".") else stem.lstrip(".")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "img"
    return f"{stem}-{sha256_hex[:12]}"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SplitWriter:
    """Writes one split's samples into DIR/shard-000000.tar, ... and records each shard."""

    def __init__(self, directory: Path, max_samples: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.shards: list[dict[str, Any]] = []
        self._writer = None
        self._count = 0
        self._entries = 0  # bytes of the current shard's entries (headers + padded data)

    def write(self, key: str, files: dict[str, bytes]) -> None:
        """Write one sample: {extension: bytes}; the tar gets KEY.EXT for each."""
        import webdataset as wds

        size = sum(_entry_bytes(len(v)) for v in files.values())
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = wds.ShardWriter(
                str(self.directory / SHARD_PATTERN),
                maxcount=self.max_samples,
                maxsize=float("inf"),  # bounded here, on the real tar size
                post=self._finished,
                verbose=0,
                encoder=False,
                user="",
                group="",
                mode=0o444,
                mtime=0,
            )
        elif self._count and (self._count >= self.max_samples or tar_bytes(self._entries + size) > self.max_bytes):
            self._writer.next_stream()
            self._count = self._entries = 0
        self._writer.write({"__key__": key, **files})
        self._count += 1
        self._entries += size

    def _finished(self, fname: str) -> None:
        path = Path(fname)
        self.shards.append({
            "name": path.name,
            "count": self._count,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
        })

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def count(self) -> int:
        return sum(s["count"] for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s["bytes"] for s in self.shards)
