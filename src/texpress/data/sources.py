"""Sources of raw images: local folders, tar/zip archives and fsspec URLs, read as a stream of items.

Every file met becomes one Item, in a fixed order (folder entries sorted by name, archive entries
in archive order, object-store keys sorted), so the same input always gives the same stream.

- Folders are walked recursively. Archives found inside them (.tar, .tar.gz, .tgz, .tar.bz2,
  .tar.xz, .zip) are read as nested sources; archives inside archives are not (they are files).
- Archives are streamed (tar) or read in place (zip): nothing is unpacked to disk. Entries that
  would escape the tree (absolute paths, '..') and links (symbolic or hard) are refused and
  reported, never written or followed; so are symbolic links met while walking a folder and
  special files (devices, FIFOs).
- URLs (s3://bucket/prefix, file://..., any fsspec protocol) name one object or a prefix.

An Item either carries the encoded bytes, or a rejection `reason` (a short category) with a
one-line `detail`. `fatal` marks a whole source that could not be read (missing, corrupt archive).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from texpress.data import storage

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")

# rejection categories decided before decoding (validate.py adds the decoding ones)
MISSING = "missing"
UNREADABLE = "unreadable"
UNSAFE_PATH = "unsafe_path"
LINK = "link"
SPECIAL_FILE = "special_file"
FILE_TOO_LARGE = "file_too_large"


@dataclass
class Item:
    source: str
    name: str
    data: bytes | None = None
    reason: str | None = None
    detail: str = ""
    fatal: bool = False


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def unsafe_member_reason(name: str) -> str | None:
    """Why an archive entry name would escape the extraction tree, or None when it is safe."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return f"absolute path {name!r} refused"
    if ".." in norm.split("/"):
        return f"path {name!r} escapes the archive ('..') and was refused"
    return None


def _basename(name: str) -> str:
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


class SourceReader:
    """Turns source arguments into Items; `max_file_bytes` bounds what is read into memory."""

    def __init__(self, max_file_bytes: int, endpoint_url: str | None = None) -> None:
        self.max_file_bytes = max_file_bytes
        self.endpoint_url = endpoint_url

    # -- entry points ---------------------------------------------------------------------------
    def iter_sources(self, sources: Iterable[str]) -> Iterator[Item]:
        for source in sources:
            yield from self.iter_source(str(source))

    def iter_source(self, source: str) -> Iterator[Item]:
        if storage.is_url(source) and not source.startswith("file://"):
            yield from self._iter_url(source)
            return
        path = storage.local_path(source)
        label = source.rstrip("/") or source
        try:
            st = os.stat(path)
        except FileNotFoundError:
            yield Item(label, _basename(label), reason=MISSING, detail="no such file or directory", fatal=True)
            return
        except OSError as exc:
            yield Item(label, _basename(label), reason=UNREADABLE, detail=_one_line(exc), fatal=True)
            return
        if stat.S_ISDIR(st.st_mode):
            yield from self._iter_dir(path, label)
        elif stat.S_ISREG(st.st_mode):
            yield from self._iter_local_file(path, label, st.st_size, top_level=True)
        else:
            yield Item(label, _basename(label), reason=SPECIAL_FILE, detail="not a regular file", fatal=True)

    # -- local folders --------------------------------------------------------------------------
    def _iter_dir(self, path: str, label: str) -> Iterator[Item]:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            yield Item(label, _basename(label), reason=UNREADABLE, detail=_one_line(exc), fatal=True)
            return
        for entry in entries:
            child = f"{label}/{entry.name}"
            try:
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    yield Item(child, entry.name, reason=LINK, detail=f"symbolic link to {target!r} not followed")
                elif entry.is_dir(follow_symlinks=False):
                    yield from self._iter_dir(entry.path, child)
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    yield from self._iter_local_file(entry.path, child, size, top_level=False)
                else:
                    yield Item(child, entry.name, reason=SPECIAL_FILE, detail="not a regular file")
            except OSError as exc:
                yield Item(child, entry.name, reason=UNREADABLE, detail=_one_line(exc))

    def _iter_local_file(self, path: str, label: str, size: int, top_level: bool) -> Iterator[Item]:
        name = _basename(label)
        if is_archive(name):
            try:
                f = open(path, "rb")
            except OSError as exc:
                yield Item(label, name, reason=UNREADABLE, detail=_one_line(exc), fatal=True)
                return
            with f:
                yield from self._iter_archive(f, label)
            return
        if size > self.max_file_bytes:
            yield Item(label, name, reason=FILE_TOO_LARGE, detail=self._too_large(size))
            return
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_file_bytes + 1)
        except OSError as exc:
            yield Item(label, name, reason=UNREADABLE, detail=_one_line(exc), fatal=top_level)
            return
        if len(data) > self.max_file_bytes:  # grew while we looked
            yield Item(label, name, reason=FILE_TOO_LARGE, detail=self._too_large(len(data)))
            return
        yield Item(label, name, data=data)

    def _too_large(self, size: int) -> str:
        return f"file is {size:,} bytes, above the limit of {self.max_file_bytes:,}"

    # -- archives -------------------------------------------------------------------------------
    def _iter_archive(self, fileobj: IO[bytes], label: str) -> Iterator[Item]:
        if label.lower().endswith(".zip"):
            yield from self._iter_zip(fileobj, label)
        else:
            yield from self._iter_tar(fileobj, label)

    def _iter_tar(self, fileobj: IO[bytes], label: str) -> Iterator[Item]:
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r|*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            yield Item(label, _basename(label), reason=UNREADABLE, detail=f"not a readable tar archive ({_one_line(exc)})", fatal=True)
            return
        members = iter(tar)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                yield Item(label, _basename(label), reason=UNREADABLE, detail=f"archive is corrupt or truncated ({_one_line(exc)})", fatal=True)
                break
            if member.isdir():
                continue
            child = f"{label}::{member.name}"
            name = _basename(member.name)
            unsafe = unsafe_member_reason(member.name)
            if unsafe:
                yield Item(child, name, reason=UNSAFE_PATH, detail=unsafe)
            elif member.issym() or member.islnk():
                kind = "symbolic" if member.issym() else "hard"
                yield Item(child, name, reason=LINK, detail=f"{kind} link to {member.linkname!r} refused")
            elif not member.isreg():
                yield Item(child, name, reason=SPECIAL_FILE, detail="not a regular file")
            elif member.size > self.max_file_bytes:
                yield Item(child, name, reason=FILE_TOO_LARGE, detail=self._too_large(member.size))
            else:
                try:
                    extracted = tar.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                    yield Item(child, name, reason=UNREADABLE, detail=f"archive is corrupt or truncated ({_one_line(exc)})", fatal=True)
                    break
                if len(data) != member.size:
                    yield Item(child, name, reason=UNREADABLE, detail="archive is truncated", fatal=True)
                    break
                yield Item(child, name, data=data)
            tar.members = []  # streaming: do not keep every header in memory

    def _iter_zip(self, fileobj: IO[bytes], label: str) -> Iterator[Item]:
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            yield Item(label, _basename(label), reason=UNREADABLE, detail=f"not a readable zip archive ({_one_line(exc)})", fatal=True)
            return
        with zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                child = f"{label}::{info.filename}"
                name = _basename(info.filename)
                mode = info.external_attr >> 16
                unsafe = unsafe_member_reason(info.filename)
                if unsafe:
                    yield Item(child, name, reason=UNSAFE_PATH, detail=unsafe)
                elif stat.S_ISLNK(mode):
                    yield Item(child, name, reason=LINK, detail="symbolic link refused")
                elif mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    yield Item(child, name, reason=SPECIAL_FILE, detail="not a regular file")
                elif info.file_size > self.max_file_bytes:
                    yield Item(child, name, reason=FILE_TOO_LARGE, detail=self._too_large(info.file_size))
                else:
                    try:
                        with zf.open(info) as f:
                            data = f.read(self.max_file_bytes + 1)
                    except Exception as exc:  # BadZipFile, zlib.error, encrypted entries, bad CRC
                        yield Item(child, name, reason=UNREADABLE, detail=f"zip entry unreadable ({_one_line(exc)})")
                        continue
                    if len(data) > self.max_file_bytes:  # the header lied about the size
                        yield Item(child, name, reason=FILE_TOO_LARGE, detail=f"entry expands above the limit of {self.max_file_bytes:,} bytes")
                        continue
                    yield Item(child, name, data=data)

    # -- fsspec URLs ----------------------------------------------------------------------------
    def _iter_url(self, url: str) -> Iterator[Item]:
        label = url.rstrip("/")
        try:
            fs, path = storage.url_to_fs(url, self.endpoint_url)
            path = path.rstrip("/")
            fs.invalidate_cache(path)  # a long-lived process must see objects added since its last listing
            if fs.isdir(path):
                listing = fs.find(path, detail=True)
                files = sorted(listing.items())
                if not files:
                    yield Item(label, _basename(label), reason=MISSING, detail="no objects under this prefix", fatal=True)
                    return
            elif fs.isfile(path):
                files = [(path, fs.info(path))]
            else:
                yield Item(label, _basename(label), reason=MISSING, detail="no such object or prefix", fatal=True)
                return
        except Exception as exc:  # network, credentials, bucket missing: report the source, go on
            yield Item(label, _basename(label), reason=UNREADABLE, detail=_one_line(exc), fatal=True)
            return
        for key, info in files:
            child = fs.unstrip_protocol(key)
            name = _basename(key)
            size = int(info.get("size") or 0)
            try:
                if is_archive(name):
                    with fs.open(key, "rb") as f:
                        yield from self._iter_archive(f, child)
                elif size > self.max_file_bytes:
                    yield Item(child, name, reason=FILE_TOO_LARGE, detail=self._too_large(size))
                else:
                    yield Item(child, name, data=fs.cat_file(key))
            except Exception as exc:
                yield Item(child, name, reason=UNREADABLE, detail=_one_line(exc))


def iter_items(sources: Iterable[str], max_file_bytes: int, endpoint_url: str | None = None) -> Iterator[Item]:
    """Items of all sources, in order."""
    return SourceReader(max_file_bytes, endpoint_url).iter_sources(sources)

