"""Real coding of held-out images by one trained arm: bpp from the bytes of the entropy-coded y and
z strings (the same accounting for every arm, container headers excluded), PSNR and MS-SSIM of the
decoded pixels, and decode wall time per megapixel on this machine.

CompressAI's reference models code with CompressAI's own compress/decompress; texpress arms code with
the product's codec (codec.api.Codec: the .tpx strings, two passes for a context model, a quality for
a variable-rate one), so every arm is measured by the bitstream its users would get."""

from __future__ import annotations

import time

import numpy as np
import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table

from texpress.codec.api import Codec
from texpress.codec.bitstream import read_header
from texpress.codec.model import SCALE_TABLE_LEVELS, TexpressModel, pad_to_multiple
from texpress.evaluate.metrics import bpp as bits_per_pixel
from texpress.evaluate.metrics import ms_ssim, psnr


def prepare_for_coding(model: CompressionModel) -> CompressionModel:
    """Eval mode on the CPU with entropy tables built from the same 256-level scale table for every
    arm, so no arm gains or loses by CompressAI's coarser default table."""
    model = model.cpu().eval()
    model.update(scale_table=get_scale_table(levels=SCALE_TABLE_LEVELS), force=True)
    return model


def _code_tpx(codec: Codec, rgb: np.ndarray, quality: float | None) -> tuple[int, np.ndarray, float]:
    """(coded bytes without the container, decoded pixels, decode seconds) through the product codec."""
    data = codec.compress(rgb, quality=quality)
    start = time.perf_counter()
    rec = np.asarray(codec.decompress(data))
    return len(data) - read_header(data).overhead_bytes, rec, time.perf_counter() - start


def _code_compressai(model: CompressionModel, rgb: np.ndarray) -> tuple[int, np.ndarray, float]:
    h, w = rgb.shape[:2]
    x = pad_to_multiple(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div(255.0))
    with torch.inference_mode():
        enc = model.compress(x)
        nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
        start = time.perf_counter()
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
        decode_s = time.perf_counter() - start
    rec = x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return nbytes, rec, decode_s


def code_image(model: CompressionModel | Codec, rgb: np.ndarray, quality: float | None = None) -> dict:
    h, w = rgb.shape[:2]
    if isinstance(model, Codec):
        nbytes, rec, decode_s = _code_tpx(model, rgb, quality)
    else:
        nbytes, rec, decode_s = _code_compressai(model, rgb)
    return {"bytes": nbytes, "bpp": bits_per_pixel(nbytes, w, h), "psnr": psnr(rgb, rec),
            "ms_ssim": ms_ssim(rgb, rec), "decode_s": decode_s, "pixels": h * w}


def code_images(model: CompressionModel, images: list[np.ndarray], quality: float | None = None) -> dict:
    """Per-image means (as CompressAI reports curves) and the decode time per megapixel overall;
    `quality` (0-100) picks a variable-rate arm's rate."""
    model = prepare_for_coding(model)
    coder = Codec(model) if isinstance(model, TexpressModel) else model
    code_image(coder, images[0], quality)  # warm-up: first-call allocations are not decode time
    rows = [code_image(coder, im, quality) for im in images]
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    mpx = sum(r["pixels"] for r in rows) / 1e6
    return {"bpp": mean("bpp"), "psnr": mean("psnr"), "ms_ssim": mean("ms_ssim"),
            "bytes": sum(r["bytes"] for r in rows),
            "decode_ms_per_mpx": 1e3 * sum(r["decode_s"] for r in rows) / mpx}
