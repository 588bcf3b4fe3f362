"""Shipping a trained model in the repository (`texpress models ship`): its weights compacted to
float16 in models/shipped/NAME.ckpt, measured on held-out photos, and recorded in the catalogue's
models.json (texpress.codec.shipped reads it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from texpress.codec.api import Codec
from texpress.codec.checkpoint import compact_checkpoint, read_checkpoint
from texpress.codec.shipped import MANIFEST, ShippedModel, manifest, models_dir
from texpress.errors import CheckpointError
from texpress.evaluate import metrics
from texpress.evaluate.sources import list_images
from texpress.files import write_atomic


def measure(checkpoint: Path, images: list[str]) -> dict:
    """Mean bpp (from the .tpx bytes), PSNR and MS-SSIM of a checkpoint over `images` (files, folders)."""
    codec = Codec.from_checkpoint(checkpoint)
    items, _ = list_images(images)
    rows = []
    for item in items:
        rgb = item.read()
        data = codec.compress(rgb)
        rec = np.asarray(codec.decompress(data).convert("RGB"))
        rows.append((metrics.bpp(len(data), rgb.shape[1], rgb.shape[0]), metrics.psnr(rgb, rec),
                     metrics.ms_ssim(rgb, rec)))
    if not rows:
        raise CheckpointError(f"no images in {', '.join(map(str, images))}")
    bpp, psnr, ms_ssim = (float(np.mean(col)) for col in zip(*rows))
    return {"images": len(rows), "bpp": round(bpp, 4), "psnr": round(psnr, 3), "ms_ssim": round(ms_ssim, 5)}


def ship(checkpoint: Path, name: str, *, val: list[str] | None = None, default: bool = False,
         curve: str | None = None, extra: dict | None = None) -> ShippedModel:
    """Compact `checkpoint` into models/shipped/NAME.ckpt (float16 weights), measure it on `val` and
    record it in models/shipped/models.json (the first model shipped becomes the default)."""
    folder = models_dir()
    target = folder / f"{name}.ckpt"
    fp = compact_checkpoint(checkpoint, target)
    try:
        catalogue = manifest(folder)
    except CheckpointError:
        catalogue = {"default": name, "models": {}}
    payload = read_checkpoint(target)
    meta, rates = payload["meta"], payload["config"].get("rate_lambdas") or []
    preset = meta.get("preset", "custom")
    entry = {"file": target.name, "fingerprint": fp, "preset": preset, "curve": curve or preset,
             "bytes": target.stat().st_size, **({"lambda": meta["lambda"]} if meta.get("lambda") else {}),
             **({"rate_lambdas": rates} if rates else {}),  # a variable-rate model: --quality 0-100 spans them
             **(extra or {})}  # lambda: the rate weight encode efforts refine against (codec.refine)
    if val:
        entry["val"] = measure(target, val)
    catalogue["models"][name] = entry
    if default:
        catalogue["default"] = name
    write_atomic(folder / MANIFEST, (json.dumps(catalogue, indent=1) + "\n").encode())
    return ShippedModel(name, target, fp, entry["preset"], entry)
