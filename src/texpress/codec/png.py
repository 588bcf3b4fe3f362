"""A PNG writer that takes pixel rows band by band, so a decoded image never has to be whole in memory.

Pillow's PNG encoder needs the full image; this one streams the rows through zlib into IDAT chunks
(8-bit greyscale, RGB, grey+alpha or RGBA, each row with the Sub filter)."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Iterable

import numpy as np

_COLOUR_TYPES = {"L": (0, 1), "LA": (4, 2), "RGB": (2, 3), "RGBA": (6, 4)}
_CHUNK = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _rows(rgb: np.ndarray, mode: str, alpha: np.ndarray | None) -> np.ndarray:
    """A band of RGB rows in the PNG's channel layout (greyscale as Pillow's L conversion)."""
    if mode in ("L", "LA"):
        r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
        grey = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)  # Pillow's ITU-R 601-2
        planes = [grey]
    else:
        planes = [rgb[..., i] for i in range(3)]
    if mode in ("LA", "RGBA"):
        planes.append(alpha)
    return np.stack(planes, axis=-1) if len(planes) > 1 else planes[0][..., None]


def _filtered(rows: np.ndarray) -> bytes:
    """Sub filter (type 1): each byte minus the byte one pixel to the left, modulo 256."""
    h, w, c = rows.shape
    flat = rows.reshape(h, w * c)
    diff = flat.copy()
    diff[:, c:] = flat[:, c:] - flat[:, :-c]
    return np.concatenate([np.ones((h, 1), np.uint8), diff], axis=1).tobytes()


def write_png(path: str | os.PathLike, width: int, height: int, mode: str, bands: Iterable[np.ndarray],
              alpha: np.ndarray | None = None, level: int = 6) -> None:
    """Write an 8-bit PNG from uint8 RGB bands (rows top to bottom); mode as in the .tpx header."""
    colour_type, _ = _COLOUR_TYPES[mode]
    deflate = zlib.compressobj(level)
    written = 0
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)))
        pending = b""
        for band in bands:
            a = alpha[written: written + band.shape[0]] if alpha is not None else None
            pending += deflate.compress(_filtered(_rows(band, mode, a)))
            written += band.shape[0]
            while len(pending) >= _CHUNK:
                f.write(_chunk(b"IDAT", pending[:_CHUNK]))
                pending = pending[_CHUNK:]
        if written != height:
            raise ValueError(f"PNG writer got {written} rows of {height}")
        pending += deflate.flush()
        f.write(_chunk(b"IDAT", pending))
        f.write(_chunk(b"IEND", b""))
