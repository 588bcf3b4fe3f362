"""The trained checkpoints shipped in the repository's models/shipped/ folder, by name (docs/models.md).

models/shipped/models.json lists them: name -> file (in that folder), fingerprint, preset, the rate
weight it was trained with and its numbers on the val photos. `texpress compress` uses the default
one when --model is omitted, `decompress` the shipped model whose fingerprint the .tpx header names,
and every command that reads a checkpoint accepts a shipped name (`lite-q2`) as well as a path or a
models:/ URI.
$TEXPRESS_MODELS_DIR points at another folder with the same layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from texpress.errors import CheckpointError

MANIFEST = "models.json"


def models_dir() -> Path:
    """$TEXPRESS_MODELS_DIR, else the checkout's models/shipped/ (src/texpress/codec -> repository root)."""
    env = os.environ.get("TEXPRESS_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models" / "shipped"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    path: Path
    fingerprint: str
    preset: str
    info: dict

    @property
    def curve(self) -> str:
        """The rate-distortion curve it is a point of: its preset, unless shipped with another (lite-gan)."""
        return self.info.get("curve", self.preset)


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no shipped models: {folder / MANIFEST} is missing (pass --model)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / MANIFEST}: unreadable ({type(exc).__name__})") from None


def _models(folder: Path, manifest: dict) -> dict[str, ShippedModel]:
    return {name: ShippedModel(name, folder / entry["file"], entry["fingerprint"], entry["preset"], entry)
            for name, entry in manifest["models"].items()}


def shipped_models() -> dict[str, ShippedModel]:
    folder = models_dir()
    return _models(folder, _manifest(folder))


def default_model() -> ShippedModel:
    """The model `texpress compress` uses when --model is omitted (one read of the manifest)."""
    folder = models_dir()
    manifest = _manifest(folder)
    return _models(folder, manifest)[manifest["default"]]


def by_name(name: str) -> ShippedModel | None:
    """The shipped model called `name`, or None (also when nothing is shipped)."""
    try:
        return shipped_models().get(name)
    except CheckpointError:
        return None


def by_fingerprint(fingerprint: str) -> ShippedModel:
    """The shipped model that made a .tpx file whose header names `fingerprint`."""
    for model in shipped_models().values():
        if model.fingerprint == fingerprint:
            return model
    raise CheckpointError(f"the file was made by model {fingerprint}, which is not one of the shipped models; "
                          "pass the checkpoint that made it with --model")


def measure(checkpoint: Path, images: list[str]) -> dict:
    """Mean bpp (from the .tpx bytes), PSNR and MS-SSIM of a checkpoint over `images` (files, folders)."""
    import numpy as np

    from texpress.codec.api import Codec
    from texpress.evaluate import metrics
    from texpress.evaluate.sources import list_images

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
    from texpress.codec.checkpoint import compact_checkpoint, read_checkpoint
    from texpress.codec.files import write_atomic

    folder = models_dir()
    target = folder / f"{name}.ckpt"
    fp = compact_checkpoint(checkpoint, target)
    try:
        manifest = _manifest(folder)
    except CheckpointError:
        manifest = {"default": name, "models": {}}
    meta = read_checkpoint(target)["meta"]
    preset = meta.get("preset", "custom")
    entry = {"file": target.name, "fingerprint": fp, "preset": preset, "curve": curve or preset,
             "bytes": target.stat().st_size, **({"lambda": meta["lambda"]} if meta.get("lambda") else {}),
             **(extra or {})}  # lambda: the rate weight encode efforts refine against (codec.refine)
    if val:
        entry["val"] = measure(target, val)
    manifest["models"][name] = entry
    if default:
        manifest["default"] = name
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return ShippedModel(name, target, fp, entry["preset"], entry)
