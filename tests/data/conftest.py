"""Fixtures of the data tests: small real images, archives (good and malicious), built per test."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def image_bytes(width: int, height: int, seed: int, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A smooth random image (compresses like a photo, not like noise) encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    im = Image.fromarray(small, "RGB").resize((width, height), Image.BILINEAR)
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture
def make_image():
    return image_bytes


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Six distinct photos (jpg and png, one in a sub-folder) plus one exact duplicate."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        (root / f"img{i}.jpg").write_bytes(image_bytes(320 + 8 * i, 288, seed=i))
    (root / "sub" / "img4.png").write_bytes(image_bytes(300, 300, seed=4, fmt="PNG"))
    (root / "sub" / "gray5.png").write_bytes(image_bytes(280, 300, seed=5, fmt="PNG", mode="L"))
    (root / "sub" / "copy_of_img0.jpg").write_bytes((root / "img0.jpg").read_bytes())
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def good_tar(tmp_path: Path) -> Path:
    path = tmp_path / "good.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("dir")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        _add(tar, "dir/a.jpg", image_bytes(300, 280, seed=100))
        _add(tar, "dir/b.png", image_bytes(290, 300, seed=101, fmt="PNG"))
    return path


@pytest.fixture
def malicious_tar(tmp_path: Path) -> Path:
    """A tar with one good image and every kind of entry that must be refused."""
    path = tmp_path / "evil.tar"
    payload = image_bytes(300, 300, seed=200)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "ok/good.jpg", payload)
        _add(tar, "../escape.jpg", payload)
        _add(tar, "ok/../../escape2.jpg", payload)
        _add(tar, "/tmp/texpress-absolute.jpg", payload)
        link = tarfile.TarInfo("ok/link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        hard = tarfile.TarInfo("ok/hard.jpg")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "ok/good.jpg"
        tar.addfile(hard)
        fifo = tarfile.TarInfo("ok/fifo.jpg")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    return path


@pytest.fixture
def malicious_zip(tmp_path: Path) -> Path:
    path = tmp_path / "evil.zip"
    payload = image_bytes(300, 300, seed=300)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/good.jpg", payload)
        zf.writestr("../escape.jpg", payload)
        zf.writestr("/tmp/texpress-absolute.jpg", payload)
        link = zipfile.ZipInfo("ok/link.jpg")
        link.create_system = 3  # unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return path


def tree_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root (for byte-identity checks)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def no_escape():
    """Asserts afterwards that no archive entry was written outside its tree."""
    targets = [Path("/tmp/texpress-absolute.jpg")]
    before = {t: t.exists() for t in targets}
    yield
    for t in targets:
        assert t.exists() == before[t], f"{t} was written"

