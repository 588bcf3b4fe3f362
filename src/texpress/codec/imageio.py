"""Reading images for coding: decode fully, apply EXIF orientation, normalise the colour mode.

Every way an input can be unusable ends in an InputError with a one-line reason, so the batch
commands and the dataset validator can report the file and go on.
"""

from __future__ import annotations

import ctypes
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from texpress.errors import ConfigError, InputError

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "TEXPRESS_MAX_PIXELS"
ORIENTATION_TAG = 0x0112
# the file names taken as images where a folder is walked (compress, evaluate, bulk, training photos)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm",
                            ".pnm", ".tga", ".jp2", ".j2k", ".avif", ".heic", ".heif", ".jxl", ".qoi"})

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


def default_max_pixels() -> int:
    """The pixel limit: TEXPRESS_MAX_PIXELS if set, else 100 megapixels."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        raise ConfigError(f"{MAX_PIXELS_ENV}={value!r} is not a whole number of pixels") from None
    if limit < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV} must be at least 1, got {limit}")
    return limit


@dataclass
class LoadedImage:
    """An image ready for the codec: 8-bit RGB pixels plus what is needed to restore its mode.

    mode is the mode to restore on decode: "RGB", "L", "RGBA" or "LA". alpha is the 8-bit alpha
    plane when the input had one (it is stored losslessly beside the coded colour).
    """

    rgb: np.ndarray
    mode: str
    alpha: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InputError("image has no pixels")
    if width * height > max_pixels:
        raise InputError(f"image is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,}")


def open_image(source: str | os.PathLike | bytes, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an encoded image (path or bytes), with the pixel limit checked before decoding."""
    max_pixels = default_max_pixels() if max_pixels is None else max_pixels
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise InputError("empty file (0 bytes)")
            fp: object = io.BytesIO(source)
        else:
            path = Path(source)
            if path.is_dir():
                raise InputError("is a directory")
            if path.stat().st_size == 0:
                raise InputError("empty file (0 bytes)")
            fp = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
            _check_size(im.width, im.height, max_pixels)
            bits = _sample_bits(im)
            im.load()
            if bits > 8:
                im.info["texpress_bits"] = bits  # Pillow reduces 16-bit RGB to 8 bits silently
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"image above the pixel limit: {exc}") from None
    except UnidentifiedImageError:
        raise InputError("not an image (unrecognised format)") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except FileNotFoundError:
        raise InputError("no such file") from None
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, and plugins' struct.error, IndexError...
        raise InputError(f"truncated or corrupt image ({_one_line(exc)})") from None
    return im


def _sample_bits(im: Image.Image) -> int:
    """Bits per sample of the file before Pillow decodes it (16 for RGB;16B, I;16 and the like)."""
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and (";16" in rawmode or rawmode.endswith("16")):
            return 16
    return 8


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _to_8bit(im: Image.Image, notes: list[str]) -> Image.Image:
    """16-bit and 32-bit integer grayscale to 8-bit L, with a warning."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16") or arr.max(initial=0) > 255:
        notes.append(f"{im.mode} input reduced to 8 bits per sample")
        arr = np.clip(arr.astype(np.int64) >> 8, 0, 255) if arr.max(initial=0) <= 65535 else np.clip(arr, 0, 255)
    return Image.fromarray(np.asarray(arr, dtype=np.uint8), "L")


def normalise(im: Image.Image) -> LoadedImage:
    """EXIF-orient and convert any Pillow mode to RGB (+ alpha), remembering the mode to restore."""
    notes: list[str] = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"animated image with {im.n_frames} frames: only the first frame is coded")
    if im.info.get("texpress_bits", 8) > 8 and im.mode in ("RGB", "RGBA"):
        notes.append(f"{im.info['texpress_bits']}-bit {im.mode} input reduced to 8 bits per sample")
    try:
        if im.getexif().get(ORIENTATION_TAG, 1) != 1:  # exif_transpose copies even upright images
            im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not lose the image
        notes.append("EXIF orientation unreadable, ignored")
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA") if ("transparency" in im.info or mode == "PA") else im.convert("RGB")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        im = _to_8bit(im, notes)
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La",):
        im = im.convert("LA")
    elif mode in ("RGBa",):
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    elif mode == "F":
        raise InputError("floating-point images (mode F) are not supported")
    if im.mode not in ("RGB", "L", "RGBA", "LA"):
        raise InputError(f"unsupported colour mode {im.mode}")
    alpha = _planes(im, "A") if im.mode in ("RGBA", "LA") else None
    rgb = _planes(im, "RGB")
    restore = im.mode
    return LoadedImage(rgb=rgb, mode=restore, alpha=alpha, warnings=notes)


_BAND_ROWS = 256


def _planes(im: Image.Image, what: str) -> np.ndarray:
    """The RGB pixels or the alpha plane as a new uint8 array, converted a band of rows at a time:
    converting a 100-megapixel image whole would hold three more copies of it at once."""
    shape = (im.height, im.width, 3) if what == "RGB" else (im.height, im.width)
    out = np.empty(shape, np.uint8)
    for top in range(0, im.height, _BAND_ROWS):
        band = im.crop((0, top, im.width, min(top + _BAND_ROWS, im.height)))
        band = band.getchannel("A") if what == "A" else band.convert("RGB")
        out[top: top + band.height] = np.asarray(band, dtype=np.uint8)
    return out


def from_array(arr: np.ndarray) -> LoadedImage:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays of uint8 (uint16 is reduced to 8 bits with a warning)."""
    arr = np.asarray(arr)
    notes: list[str] = []
    if arr.dtype == np.uint16:
        notes.append("uint16 input reduced to 8 bits per sample")
        arr = (arr >> 8).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise InputError(f"arrays must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return LoadedImage(rgb=np.repeat(arr[..., None], 3, axis=2), mode="L", warnings=notes)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return LoadedImage(rgb=np.ascontiguousarray(arr), mode="RGB", warnings=notes)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return LoadedImage(rgb=np.ascontiguousarray(arr[..., :3]), mode="RGBA", alpha=arr[..., 3].copy(), warnings=notes)
    raise InputError(f"unsupported array shape {arr.shape}")


def load_image(source: ImageSource, max_pixels: int | None = None) -> LoadedImage:
    """Any supported source (path, encoded bytes, PIL image, array) to a LoadedImage."""
    max_pixels = default_max_pixels() if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        loaded = from_array(source)
    elif isinstance(source, Image.Image):
        _check_size(source.width, source.height, max_pixels)
        loaded = normalise(source)
    else:
        loaded = normalise(open_image(source, max_pixels))
        if loaded.width * loaded.height >= TRIM_PIXELS:
            trim_heap()
    _check_size(loaded.width, loaded.height, max_pixels)
    return loaded


TRIM_PIXELS = 16_000_000


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc). Pillow frees a decoded image's blocks onto the
    heap, where they would stay in the process's memory while torch maps fresh memory for its tensors."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
