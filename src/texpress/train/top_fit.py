"""Fit the new top upscale of a derived model (docs/texture.md, the upper-layer study) to photos.

A model derived from a trained one with other top upscale blocks (`texpress models init --from
lite-q1 --top-upscale subpixel`) codes at the same rate, since the rate depends on the encoder and
the hyperprior only, but its top blocks start untrained. Their rate-distortion fine-tune is then a
pure distortion fit with everything below them fixed: the features under the top blocks are
computed once on a set of crops (from the latents the bitstream carries), and only the top blocks
(and the output conv, if any) are trained on the MSE against the crops. Lite's top block, which makes
RGB, is linear, so this is a least-squares problem that L-BFGS solves in seconds, where the whole
trainer needs hundreds of steps just to undo the fresh layer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from texpress.errors import InputError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def photo_crops(folder: str | os.PathLike, count: int, side: int = 128, seed: int = 0) -> torch.Tensor:
    """`count` random side x side RGB crops (N, 3, side, side) in [0, 1], one per photo in turn."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no photos to fit the top upscale on")
    rng = np.random.default_rng(seed)
    crops = []
    for index in rng.permutation(len(files)):
        with Image.open(files[index]) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        if min(h, w) < side:
            continue
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crops.append(rgb[top:top + side, left:left + side])
        if len(crops) == count:
            break
    if not crops:
        raise InputError(f"{folder}: no photo has a side of {side} px")
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)


def top_blocks(model: nn.Module) -> nn.Sequential:
    """The top upscale blocks the config replaced, then the output conv (an identity without one)."""
    g = model.generator
    n = model.config.top_upscales or 1
    return nn.Sequential(*g.ups[4 - n:], g.tail)


@torch.no_grad()
def _features(model: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """What the top blocks read: the generator's activations below them, from the coded latents."""
    model.eval()
    y_hat = model(crops)["y_hat"]
    g = model.generator
    h = g.head(y_hat)
    h = h + g.blocks(h)
    return g.ups[: 4 - (model.config.top_upscales or 1)](h)


def _psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def fit_top_upscale(model: nn.Module, crops: torch.Tensor, *, iterations: int = 150) -> dict[str, float]:
    """Train the top blocks on the MSE to `crops`, everything below fixed, with full-batch L-BFGS (a
    quadratic problem when the top block is linear: it converges in tens of iterations, where Adam
    needs thousands); returns the crops' PSNR (dB) before and after. The model is left in eval mode."""
    feats = _features(model, crops)
    top = top_blocks(model)
    top.train()
    params = [p for p in top.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def mse() -> torch.Tensor:
        return F.mse_loss(top(feats), crops)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = mse()
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(mse())
    opt.step(closure)
    with torch.no_grad():
        after = float(mse())
    model.eval()
    return {"psnr_before": _psnr(before), "psnr_after": _psnr(after)}
