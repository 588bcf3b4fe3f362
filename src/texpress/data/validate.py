"""Validation of one encoded image: decode it fully, classify what is wrong, hash its pixels.

The decoding itself is texpress.codec.imageio's (the same rules as the codec's inputs): the
pixel limit is checked before decoding, truncated and corrupt files fail, modes are converted.
Here a failure becomes a rejection category (for the report and `texpress data stats`) plus the
one-line message; a success carries the content hash used for dedupe and the split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from texpress.codec.imageio import normalise, open_image
from texpress.errors import InputError

# rejection categories decided by decoding
EMPTY = "empty"
NOT_IMAGE = "not_image"
CORRUPT = "corrupt"
TOO_LARGE = "too_large"
TOO_SMALL = "too_small"
BAD_MODE = "bad_mode"

# Pillow format name -> the extension the original bytes are stored under in a shard
FORMAT_EXT = {
    "JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
    "DIB": "bmp", "TIFF": "tiff", "PPM": "ppm", "JPEG2000": "jp2", "AVIF": "avif", "HEIF": "heic",
    "TGA": "tga", "QOI": "qoi", "ICO": "ico", "SGI": "sgi", "PCX": "pcx", "DDS": "dds",
}
# every extension a shard sample may use for its image (loaders look for these keys)
IMAGE_EXTS = tuple(sorted(set(FORMAT_EXT.values())))


@dataclass(frozen=True)
class Accepted:
    sha256: str  # of the decoded pixels (RGB, plus alpha when present) and the size
    width: int  # as displayed (after EXIF orientation)
    height: int
    ext: str
    mode: str  # "RGB", "L", "RGBA" or "LA": the mode the codec would restore
    exif_transpose: bool  # the stored bytes need EXIF orientation applied to look right


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


def classify(message: str) -> str:
    """Category of an InputError message from imageio (kept in step by tests/data/test_validate.py)."""
    text = message.lower()
    if text.startswith("truncated or corrupt"):
        return CORRUPT
    if text.startswith("empty file"):
        return EMPTY
    if text.startswith("not an image"):
        return NOT_IMAGE
    if "pixel limit" in text or "above the limit" in text:
        return TOO_LARGE
    if "mode" in text:
        return BAD_MODE
    return CORRUPT


def pixel_hash(rgb, alpha=None) -> str:
    """sha256 over the size, the RGB pixels and the alpha plane: equal images, equal hashes."""
    h = hashlib.sha256()
    h.update(f"{rgb.shape[1]}x{rgb.shape[0]}:{'rgba' if alpha is not None else 'rgb'}:".encode())
    h.update(memoryview(rgb).cast("B"))
    if alpha is not None:
        h.update(memoryview(alpha).cast("B"))
    return h.hexdigest()


def validate(data: bytes, min_side: int, max_pixels: int) -> Accepted | Rejected:
    """Decode `data` fully and decide; never raises for a bad image."""
    try:
        im = open_image(data, max_pixels)
        fmt = im.format or ""
        orientation = 1
        try:
            orientation = int(im.getexif().get(0x0112, 1) or 1)
        except Exception:
            pass
        loaded = normalise(im)
    except InputError as exc:
        message = str(exc)
        return Rejected(classify(message), message)
    except Exception as exc:  # anything else a broken file provokes inside Pillow
        return Rejected(CORRUPT, f"truncated or corrupt image ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})")
    width, height = loaded.width, loaded.height
    if min(width, height) < min_side:
        return Rejected(TOO_SMALL, f"image is {width}x{height}, its shorter side is below the minimum of {min_side}")
    ext = FORMAT_EXT.get(fmt, fmt.lower() or "img")
    return Accepted(
        sha256=pixel_hash(loaded.rgb, loaded.alpha),
        width=width,
        height=height,
        ext=ext,
        mode=loaded.mode,
        exif_transpose=orientation not in (0, 1),
    )
