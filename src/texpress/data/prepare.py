"""The `prepare` stage: gather the configured sources, unchanged, into one folder (data/raw).

    samples                the photos inside scikit-image and scikit-learn -> DEST/samples/NAME
    a local folder         its regular files, recursively -> DEST/BASENAME/... (symbolic links
                           and special files are skipped with a warning; the shard stage would
                           refuse them anyway)
    a local file/archive   copied as it is -> DEST/BASENAME (archives are read by the shard stage)
    an fsspec URL          the object, or every object under the prefix -> DEST/BASENAME/...

Nothing is decoded or filtered here: validation is the shard stage's job, so DVC versions the
raw input exactly as it came. DEST is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from texpress.data import storage
from texpress.data.config import PrepareConfig
from texpress.errors import ConfigError, InputError
from texpress.samples import sample_photos

SAMPLES = "samples"


def _basename(source: str) -> str:
    name = source.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        name = Path(storage.local_path(source)).resolve().name if storage.is_local(source) else "source"
    return name


def _copy_tree(src: Path, dst: Path, warn: Callable[[str], None]) -> int:
    copied = 0
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs.sort()
        rel = Path(root).relative_to(src)
        for name in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            warn(f"{Path(root) / name}: symbolic link skipped")
            dirs.remove(name)
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                warn(f"{path}: {'symbolic link' if path.is_symlink() else 'not a regular file'} skipped")
                continue
            target = dst / rel / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied += 1
    return copied


def _copy_url(url: str, dst: Path, endpoint_url: str | None) -> int:
    fs, path = storage.url_to_fs(url, endpoint_url)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    if fs.isfile(path):
        dst.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(dst))
        return 1
    keys = sorted(fs.find(path))
    if not keys:
        raise InputError(f"{url}: no such object or prefix")
    for key in keys:
        rel = key[len(path):].lstrip("/")
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    return len(keys)


def gather(config: PrepareConfig, dest: str | Path, warn: Callable[[str], None] = lambda m: None) -> dict[str, int]:
    """Copy every source into `dest`; returns {destination name: files copied}."""
    dest = Path(dest)
    names = [SAMPLES if s == SAMPLES else _basename(s) for s in config.sources]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"prepare.sources: two sources would both be gathered as {sorted(dupes)[0]!r}")
    tmp = storage.new_partial_dir(dest)
    counts: dict[str, int] = {}
    try:
        for source, name in zip(config.sources, names):
            target = tmp / name
            if source == SAMPLES:

                photos = sample_photos()
                if not photos:
                    raise InputError("no sample photos found (are scikit-image and scikit-learn installed?)")
                target.mkdir()
                for p in photos:
                    shutil.copyfile(p, target / p.name)
                counts[name] = len(photos)
            elif storage.is_local(source):
                path = Path(storage.local_path(source))
                if path.is_dir():
                    counts[name] = _copy_tree(path, target, warn)
                elif path.is_file():
                    shutil.copyfile(path, target)
                    counts[name] = 1
                else:
                    raise InputError(f"{source}: no such file or directory")
            else:
                try:
                    counts[name] = _copy_url(source, target, config.endpoint_url)
                except InputError:
                    raise
                except Exception as exc:
                    lines = str(exc).strip().splitlines()
                    raise InputError(f"{source}: cannot read ({lines[0] if lines else type(exc).__name__})") from None
        storage.replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
