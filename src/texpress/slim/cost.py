"""Decode cost measured side by side: whole-decode time per megapixel and peak decode memory.

Every model decodes the same photo; the timings are interleaved round by round (model A, B, C, A,
B, C, ...) and the best round of each is kept, so the ratios hold on a shared, noisy machine. Pillow's
WebP decode of the same photo is timed in the same rounds as a yardstick. Peak decode memory is the
rise of the process's resident set during one decode: Linux's peak-RSS counter (VmHWM) is reset
before the decode (/proc/self/clear_refs, after glibc's malloc_trim has handed freed heap back) and
read after it, less the resident set before it.
"""

from __future__ import annotations

import ctypes
import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from texpress.codec.api import Codec

WEBP_QUALITY = 20  # the design's reference point: WebP q=20 is about 0.38 bpp on Kodak-like photos


@dataclass(frozen=True)
class DecodeCost:
    ms: float  # best whole decode of the photo
    ms_per_mpx: float
    peak_mb: float


def encode_for_timing(codec: Codec, rgb: np.ndarray, quality: float | None) -> bytes:
    return codec.compress(rgb, quality=quality if codec.config.variable_rate else None)


def webp_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=WEBP_QUALITY)
    return buf.getvalue()


def _decode_webp(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def peak_decode_mb(codec: Codec, data: bytes) -> float:
    """MB the resident set rises by during one decode (NaN where Linux's /proc counters are missing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the decode's own pages count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        codec.decompress(data)
        return max(0, _status_kb("VmHWM") - before) / 1024.0
    except (OSError, AttributeError):
        return float("nan")


def side_by_side(codecs: dict[str, Codec], rgb: np.ndarray, quality: float | None = 50.0,
                 rounds: int = 7) -> tuple[dict[str, DecodeCost], float]:
    """({name: DecodeCost}, Pillow WebP decode ms) on one photo; interleaved rounds, best of each."""
    files = {name: encode_for_timing(c, rgb, quality) for name, c in codecs.items()}
    webp = webp_bytes(rgb)
    best = {name: float("inf") for name in [*codecs, "webp"]}
    for name, c in codecs.items():  # warm-up: tables built, allocator primed
        c.decompress(files[name])
    for _ in range(rounds):
        for name, c in codecs.items():
            t0 = time.perf_counter()
            c.decompress(files[name])
            best[name] = min(best[name], time.perf_counter() - t0)
        t0 = time.perf_counter()
        _decode_webp(webp)
        best["webp"] = min(best["webp"], time.perf_counter() - t0)
    mpx = rgb.shape[0] * rgb.shape[1] / 1e6
    costs = {name: DecodeCost(best[name] * 1e3, best[name] * 1e3 / mpx, peak_decode_mb(c, files[name]))
             for name, c in codecs.items()}
    return costs, best["webp"] * 1e3
