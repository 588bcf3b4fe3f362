"""Where data lives: local paths or fsspec URLs (s3://, file://, memory://, ...).

The S3 endpoint is configurable for S3-compatible stores (MinIO, moto, Ceph): an explicit
`endpoint_url` argument wins, then the TEXPRESS_S3_ENDPOINT_URL environment variable, then
whatever botocore resolves by itself (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, ~/.aws/config).
Credentials come from the usual AWS environment variables or profiles.

Local output folders (data/raw, a dataset) are built in a temporary sibling and renamed into
place when complete (`new_partial_dir`, `replace_dir`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

ENDPOINT_ENV = "TEXPRESS_S3_ENDPOINT_URL"

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def is_url(path: str | os.PathLike) -> bool:
    """True for scheme://... (a Windows drive letter or a plain path is not a URL)."""
    return bool(_URL_RE.match(str(path)))


def is_local(path: str | os.PathLike) -> bool:
    """Plain paths and file:// URLs."""
    return not is_url(path) or str(path).startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    """A plain path for a local path or file:// URL."""
    text = str(path)
    if text.startswith("file://"):

        return unquote(urlparse(text).path)
    return text


def endpoint_for(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or os.environ.get(ENDPOINT_ENV) or None


def storage_options(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec keyword arguments for `url`: the S3 endpoint for s3:// URLs, nothing otherwise."""
    protocol = str(url).split("://", 1)[0].lower() if is_url(url) else "file"
    if protocol in ("s3", "s3a"):
        endpoint = endpoint_for(endpoint_url)
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def url_to_fs(url: str, endpoint_url: str | None = None):
    """(filesystem, path inside it) for a URL, with the endpoint applied."""
    import fsspec.core

    return fsspec.core.url_to_fs(url, **storage_options(url, endpoint_url))


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local path or URL with '/'."""
    root = str(root)
    if not is_url(root):
        return os.path.join(root, *parts)
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def read_bytes(url: str, endpoint_url: str | None = None) -> bytes:
    if not is_url(url) or url.startswith("file://"):
        with open(local_path(url), "rb") as f:
            return f.read()
    fs, path = url_to_fs(url, endpoint_url)
    return fs.cat_file(path)


# -- local folders written as a whole ------------------------------------------------------------

def new_partial_dir(dest: Path) -> Path:
    """A fresh, empty temporary sibling of `dest` to build it in (`.NAME.partial-PID`).

    Partial folders that killed runs left behind (their process is gone) are removed first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, OSError):
            continue
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def replace_dir(tmp: Path, dest: Path) -> None:
    """Rename the complete folder `tmp` to `dest`; what `dest` held before is deleted afterwards."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
