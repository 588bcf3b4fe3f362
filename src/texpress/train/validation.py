"""Validation during training and the final outputs of a run, for both trainers.

`validate` measures bpp, PSNR, MS-SSIM and the evaluation's checkerboard and texture-statistics
scores on the validation images (from the likelihoods, or from the real bitstream at the end), so a
run that starts to invent periodic artifacts shows it in its curves, not only at evaluation;
`log_validation` sends them and an originals-beside-reconstructions grid to the tracker;
`write_final` writes the ready-to-code `model.ckpt` (entropy coder updated), `train_metrics.json`,
`train_curves.tsv` and `curves/*.png` (when matplotlib is installed) into a folder and logs them as
artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from texpress.codec.checkpoint import save_checkpoint
from texpress.codec.model import pad_to_multiple
from texpress.evaluate.texture import TextureReference
from texpress.files import write_atomic
from texpress.train import curves
from texpress.train.losses import MSE_255, bits_per_pixel, ms_ssim_any, psnr_from_mse_255
from texpress.train.state import CURVES_FILE, METRICS_FILE, MODEL_FILE, Session

VAL_KEYS = ("bpp", "psnr", "ms_ssim", "checkerboard", "texture_distance")  # logged as val/<key>


@torch.no_grad()
def validate(codec, items: list[tuple[str, torch.Tensor]], *, bitstream: bool = False,
             grid_images: int = 0) -> tuple[dict[str, float], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Mean bpp, PSNR, MS-SSIM, checkerboard and texture distance over `items` (key, (1,3,H,W) in [0,1]).

    bitstream=False: bpp from the likelihoods of the eval-mode forward pass (quantized latents, so
    the reconstruction is what the decoder would produce). bitstream=True: real entropy coding of y
    and z (needs an updated model) and decoding from the bytes. Inputs are padded (replicate) to a
    multiple of 64 and the output is cropped back; bpp counts the bits over the original pixels."""
    was_training = codec.training
    codec.eval()
    tpx = _tpx_coder(codec) if bitstream else None
    device = next(codec.parameters()).device
    bpps, psnrs, msssims, checkers, textures, pairs = [], [], [], [], [], []
    try:
        for _key, x in items:
            x = x.to(device)
            h, w = x.shape[-2:]
            xp = pad_to_multiple(x)
            if tpx is not None:
                data = tpx.compress(_uint8(x))
                bpp = len(data) * 8 / (h * w)
                x_hat = torch.from_numpy(np.array(tpx.decompress(data))).permute(2, 0, 1)[None].float().div(255)
            elif bitstream:
                enc = codec.compress(xp)
                nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
                bpp = nbytes * 8 / (h * w)
                x_hat = codec.decompress(enc["strings"], enc["shape"])["x_hat"]
            else:
                out = codec(xp)
                bpp = float(bits_per_pixel(out["likelihoods"], h * w))
                x_hat = out["x_hat"]
            x_hat = x_hat[..., :h, :w].clamp(0, 1)
            mse = float(F.mse_loss(x_hat, x)) * MSE_255
            bpps.append(bpp)
            psnrs.append(psnr_from_mse_255(mse))
            msssims.append(float(ms_ssim_any(x_hat, x)))
            scores = TextureReference.of(_uint8(x)).scores(_uint8(x_hat))
            checkers.append(scores["checkerboard"])
            textures.append(scores["texture-distance"])
            if len(pairs) < grid_images:
                pairs.append((x[0].cpu(), x_hat[0].cpu()))
    finally:
        codec.train(was_training)
    n = max(1, len(bpps))
    return {"bpp": sum(bpps) / n, "psnr": sum(psnrs) / n, "ms_ssim": sum(msssims) / n,
            "checkerboard": sum(checkers) / n, "texture_distance": sum(textures) / n, "images": len(bpps)}, pairs


def _tpx_coder(codec):
    """The .tpx coder for models that CompressAI's own coding does not cover (a checkerboard context, a
    variable rate: at its default quality); None for the others, which keep the comparable numbers
    of CompressAI's coder."""
    if not (codec.has_context or codec.config.variable_rate):
        return None
    from texpress.codec.api import Codec

    return Codec(codec)


def _uint8(x: torch.Tensor):
    """(1,3,H,W) in [0,1] -> HxWx3 uint8, the 8-bit image the evaluation scores."""
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def image_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], side: int = 256):
    """Originals beside reconstructions, one pair per row, centre-cropped to side x side; uint8 HxWx3."""
    from torchvision.transforms.functional import center_crop
    from torchvision.utils import make_grid

    tiles = []
    for orig, recon in pairs:
        s = min(side, *orig.shape[-2:])
        tiles += [center_crop(orig, [s, s]), center_crop(recon, [s, s])]
    s = min(t.shape[-1] for t in tiles)
    tiles = [center_crop(t, [s, s]) for t in tiles]
    grid = make_grid(tiles, nrow=2, padding=4, pad_value=1.0)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def log_validation(s: Session, items: list, tracker, step: int) -> dict[str, float]:
    """Validate the codec of `s` at `step`; metrics and the image grid go to the tracker."""
    metrics, pairs = validate(s.t.codec, items, grid_images=s.cfg.grid_images)
    tracker.log_metrics({f"val/{k}": metrics[k] for k in VAL_KEYS}, step)
    tracker.flush()
    if pairs:
        tracker.log_image(image_grid(pairs), f"val/grid_step{step:07d}.png")
    return metrics


def write_final(s: Session, folder: Path, *, val_items: list, tracker, meta: dict[str, Any],
                last: dict[str, float]) -> dict[str, Any]:
    """The run's outputs in `folder`, logged as artifacts; returns the summary metrics.

    The codec is moved to the CPU first: training is over, and the bitstream check then codes
    exactly as `texpress compress` will."""
    codec = s.t.codec.to("cpu")
    step = s.step
    metrics: dict[str, Any] = {}
    if last:
        metrics.update({"train_bpp": last["bpp"], "train_psnr": last["psnr"], "train_loss_rd": last["loss_rd"]})
    estimate = log_validation(s, val_items, tracker, step) if val_items else {}
    model_fp = save_checkpoint(codec, folder / MODEL_FILE, meta=meta)  # update(force=True) + atomic write
    final: dict[str, Any] = {}
    if val_items:
        real, _ = validate(codec, val_items, bitstream=True)
        final = {"val_bpp": real["bpp"], "val_psnr": real["psnr"], "val_ms_ssim": real["ms_ssim"],
                 "val_bpp_estimate": estimate["bpp"], "val_images": real["images"]}
        tracker.log_metrics({"final/bpp": real["bpp"], "final/psnr": real["psnr"], "final/ms_ssim": real["ms_ssim"]},
                            step)
    metrics.update(final, model_fingerprint=model_fp)
    summary = {**final, "steps": step, "train_bpp": metrics.get("train_bpp"), "train_psnr": metrics.get("train_psnr"),
               "model_fingerprint": model_fp}
    try:
        pngs = curves.plot_curves(s.history, folder / "curves", rd_steps=s.cfg.rd_steps if s.cfg.gan_steps else None,
                                  target_bpp=s.cfg.target_bpp if s.cfg.fixed_lambda is None else None)
    except ModuleNotFoundError:  # matplotlib is optional where the single-process trainer runs
        pngs = []
    curves.write_tsv(s.history, folder / CURVES_FILE)

    write_atomic(folder / METRICS_FILE, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    for png in pngs:
        tracker.log_artifact(png, "curves")
    tracker.log_artifact(folder / CURVES_FILE, "curves")
    tracker.log_artifact(folder / METRICS_FILE)
    tracker.log_artifact(folder / MODEL_FILE, "model")
    tracker.set_tags({"model_fingerprint": model_fp})
    tracker.flush()
    return metrics
