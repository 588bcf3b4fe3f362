"""A destination root, local folder or fsspec URL, where every object appears only when complete.

Local files are written under a temporary name and renamed (codec.files.write_atomic); object
stores get each object in one PUT, so a reader never sees half an object there either.
"""

from __future__ import annotations

import os
from pathlib import Path

from texpress.files import write_atomic
from texpress.data import storage


class Store:
    """Objects under `root`, addressed by relative keys with '/' separators."""

    def __init__(self, root: str, endpoint_url: str | None = None) -> None:
        self.root = str(root).rstrip("/") or str(root)
        self.endpoint_url = endpoint_url
        self.local = storage.is_local(self.root)
        self._fs = None
        self._path = storage.local_path(self.root) if self.local else None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fs": None}  # filesystems are made again in each Ray worker

    @property
    def fs(self):
        if self._fs is None:
            self._fs, self._path = storage.url_to_fs(self.root, self.endpoint_url)
            self._path = self._path.rstrip("/")
        return self._fs

    def url(self, key: str) -> str:
        return storage.join(self.root, key)

    def _local(self, key: str) -> Path:
        return Path(self._path) / key

    def put(self, key: str, data: bytes) -> None:
        if self.local:
            write_atomic(self._local(key), data)
        else:
            self.fs.pipe_file(f"{self._path}/{key}", data)

    def get(self, key: str) -> bytes:
        if self.local:
            return self._local(key).read_bytes()
        return self.fs.cat_file(f"{self._path}/{key}")

    def exists(self, key: str) -> bool:
        if self.local:
            return self._local(key).is_file()
        return self.fs.exists(f"{self._path}/{key}")

    def delete(self, key: str) -> None:
        if self.local:
            self._local(key).unlink(missing_ok=True)
        elif self.exists(key):
            self.fs.rm_file(f"{self._path}/{key}")

    def list(self, prefix: str = "") -> list[str]:
        """Keys of every object under `prefix` (sorted); temporary files of killed writers excluded."""
        if self.local:
            base = self._local(prefix) if prefix else Path(self._path)
            if not base.is_dir():
                return []
            keys = []
            for root, dirs, files in os.walk(base):
                dirs.sort()
                keys += [os.path.relpath(os.path.join(root, f), self._path).replace(os.sep, "/")
                         for f in files if ".part-" not in f]
            return sorted(keys)
        base = f"{self._path}/{prefix}".rstrip("/")
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        return sorted(k[len(self._path) + 1:] for k in self.fs.find(base))

    def remove_stale_temporaries(self) -> None:
        """Temporary files that killed writers left behind (local folders; object stores have none)."""
        if self.local and os.path.isdir(self._path):
            for root, _, files in os.walk(self._path):
                for f in files:
                    if f.startswith(".") and ".part-" in f:
                        os.unlink(os.path.join(root, f))

    def remove_empty_dir(self, key: str) -> None:
        """Local folders only (object stores have no empty folders)."""
        if self.local:
            try:
                self._local(key).rmdir()
            except OSError:
                pass

    def make_root(self) -> None:
        if self.local:
            Path(self._path).mkdir(parents=True, exist_ok=True)
