"""Classical codecs as R-D baselines: JPEG, WebP, AVIF, JPEG 2000 (Pillow), HEIC (pillow-heif),
JPEG XL (imagecodecs).

Each baseline encodes 8-bit RGB to the bytes of a real file (what a user would store, container
included) and decodes them back. Settings favour quality where the codec allows: 4:4:4 chroma,
one thread (the machine is shared; timings stay comparable). `quality` is each codec's own knob
(`quality_name` says which), and `default_qualities` is an eight-point sweep that starts at the
codec's lowest setting (JPEG q=1, WebP/AVIF/HEIC q=0, JPEG XL distance 25, JPEG 2000 at 1:1000) and
ends near 2 bpp on photos, so that it reaches as low a rate as the codec can (on BSDS-size photos:
JPEG 0.15 bpp, JPEG XL 0.18, WebP 0.13, AVIF 0.10, HEIC 0.06, JPEG 2000 0.02). Every setting is
recorded in the summary (`Baseline.settings`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from texpress.errors import TexpressError


class BaselineError(TexpressError):
    """A baseline codec is unavailable or failed on one image."""


@dataclass(frozen=True)
class Baseline:
    name: str
    label: str
    quality_name: str
    default_qualities: tuple[float, ...]
    chroma: str
    settings: dict = field(default_factory=dict)
    _encode: Callable[[np.ndarray, float], bytes] | None = None
    _decode: Callable[[bytes], np.ndarray] | None = None
    _version: Callable[[], str] | None = None
    point_prefix: str = "q"  # point labels: q=50, ratio=60, d=1.5

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        try:
            return self._encode(np.ascontiguousarray(rgb, dtype=np.uint8), quality)
        except BaselineError:
            raise
        except Exception as exc:
            raise BaselineError(f"{self.name} encode at {self.quality_name} {quality:g} failed: {_one_line(exc)}") from None

    def decode(self, data: bytes) -> np.ndarray:
        try:
            out = np.asarray(self._decode(data))
        except Exception as exc:
            raise BaselineError(f"{self.name} decode failed: {_one_line(exc)}") from None
        if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
            raise BaselineError(f"{self.name} decoded to {out.dtype} {out.shape}, expected 8-bit RGB")
        return out

    def version(self) -> str:
        try:
            return self._version() if self._version else ""
        except Exception:
            return "unavailable"

    def describe(self) -> dict:
        """The recorded settings: library version, chroma, quality knob and its values."""
        return {**self.settings, "label": self.label, "library": self.version(), "chroma": self.chroma,
                "quality_name": self.quality_name}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---- Pillow codecs -------------------------------------------------------------------------------

def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pil_encode(fmt: str, **fixed) -> Callable[[np.ndarray, float], bytes]:
    def encode(rgb: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, fmt, quality=int(round(quality)), **fixed)
        return buf.getvalue()

    return encode


def _jpeg2000_encode(rgb: np.ndarray, ratio: float) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG2000", quality_mode="rates", quality_layers=[float(ratio)],
                                     irreversible=True, mct=1, no_jp2=True)
    return buf.getvalue()


def _pil_version(feature: str) -> Callable[[], str]:
    def version() -> str:
        from PIL import __version__, features

        turbo = f", libjpeg-turbo {features.version('libjpeg_turbo')}" if feature == "jpg" else ""
        return f"Pillow {__version__}, {feature} {features.version(feature)}{turbo}"

    return version


def _avif_version() -> str:
    from PIL import __version__, _avif

    return f"Pillow {__version__}, libavif {_avif.libavif_version}, {_avif.codec_versions()}"


# ---- pillow-heif ---------------------------------------------------------------------------------

def _heic_encode(rgb: np.ndarray, quality: float) -> bytes:
    import pillow_heif

    heif = pillow_heif.from_bytes(mode="RGB", size=(rgb.shape[1], rgb.shape[0]), data=rgb.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=int(round(quality)), chroma="444", save_nclx_profile=True)
    return buf.getvalue()


def _heic_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif[0].to_pillow().convert("RGB"))


def _heic_version() -> str:
    import pillow_heif

    info = pillow_heif.libheif_info()
    return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"


# ---- imagecodecs ---------------------------------------------------------------------------------

def _jxl_encode(rgb: np.ndarray, distance: float) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(rgb, distance=float(distance), effort=7, numthreads=1))


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    out = imagecodecs.jpegxl_decode(data, numthreads=1)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return out[..., :3]


def _jxl_version() -> str:
    import imagecodecs

    return f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}"


BASELINES: dict[str, Baseline] = {
    "jpeg": Baseline(
        "jpeg", "JPEG", "quality", (1, 3, 5, 12, 25, 45, 70, 90), "4:4:4",
        {"encoder": "libjpeg(-turbo) via Pillow", "optimize": True, "subsampling": "4:4:4"},
        _pil_encode("JPEG", subsampling=0, optimize=True), _pil_decode, _pil_version("jpg")),
    "webp": Baseline(
        "webp", "WebP", "quality", (0, 2, 5, 20, 40, 60, 80, 90), "4:2:0",
        {"encoder": "libwebp via Pillow", "method": 6,
         "note": "lossy WebP is always 4:2:0 (VP8 has no 4:4:4)"},
        _pil_encode("WEBP", method=6), _pil_decode, _pil_version("webp")),
    "avif": Baseline(
        "avif", "AVIF", "quality", (0, 5, 10, 30, 50, 65, 80, 92), "4:4:4",
        {"encoder": "libavif via Pillow", "speed": 6, "subsampling": "4:4:4", "max_threads": 1},
        _pil_encode("AVIF", subsampling="4:4:4", speed=6, max_threads=1), _pil_decode, _avif_version),
    "jpeg2000": Baseline(
        "jpeg2000", "JPEG 2000", "compression ratio", (1000, 480, 240, 120, 60, 34, 20, 12), "4:4:4",
        {"encoder": "OpenJPEG via Pillow", "quality_mode": "rates", "irreversible": True,
         "mct": 1, "container": "raw J2K codestream (no_jp2)",
         "note": "quality is the compression ratio against 24 bpp: 120 targets 0.2 bpp"},
        _jpeg2000_encode, _pil_decode, _pil_version("jpg_2000"), point_prefix="ratio"),
    "heic": Baseline(
        "heic", "HEIC", "quality", (0, 5, 10, 25, 40, 50, 58, 66), "4:4:4",
        {"encoder": "x265 through libheif (pillow-heif)", "chroma_option": "444"},
        _heic_encode, _heic_decode, _heic_version),
    "jxl": Baseline(
        "jxl", "JPEG XL", "distance", (25.0, 20.0, 15.0, 8.0, 4.0, 2.5, 1.5, 0.8), "4:4:4",
        {"encoder": "libjxl via imagecodecs", "effort": 7, "numthreads": 1,
         "note": "lower distance is higher quality (Butteraugli distance); XYB, no chroma subsampling"},
        _jxl_encode, _jxl_decode, _jxl_version, point_prefix="d"),
}


def library_versions() -> dict[str, str]:
    """The versions of every library that writes or reads a baseline's bytes, and of those behind the
    model's numbers: a change in a baseline's curve can be traced to a version (recorded in
    summary.json and the MLflow run). A library that cannot be imported is "unavailable"."""
    import compressai
    import PIL
    import torch
    from PIL import features

    out = {"Pillow": PIL.__version__, "torch": torch.__version__, "compressai": compressai.__version__,
           "numpy": np.__version__}
    for name, feature in (("libjpeg", "jpg"), ("libjpeg-turbo", "libjpeg_turbo"), ("libwebp", "webp"),
                          ("libavif", "avif"), ("openjpeg", "jpg_2000"), ("zlib", "zlib")):
        out[name] = str(features.version(feature) or "unavailable")
    optional = {"pillow-heif": _heic_libraries, "imagecodecs": _jxl_libraries}
    for name, read in optional.items():
        try:
            out.update(read())
        except Exception:
            out[name] = "unavailable"
    return out


def _heic_libraries() -> dict[str, str]:
    import pillow_heif

    info = pillow_heif.libheif_info()
    return {"pillow-heif": pillow_heif.__version__, "libheif": str(info.get("libheif")),
            "heif-encoder": str(info.get("HEIF"))}


def _jxl_libraries() -> dict[str, str]:
    import imagecodecs

    return {"imagecodecs": imagecodecs.__version__, "libjxl": imagecodecs.jpegxl_version().removeprefix("libjxl ")}


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise BaselineError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}") from None
