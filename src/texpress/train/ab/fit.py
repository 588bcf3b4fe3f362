"""Training one arm with the plain rate-distortion loss every arm shares: bpp + lambda * MSE (0-255).

All arms see exactly the same crops in the same order (a pure function of seed and step), so equal steps
means equal data: the comparison measures how fast each architecture learns, nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from compressai.models import CompressionModel

from texpress.data.device_crops import DeviceCrops
from texpress.errors import InputError
from texpress.train.losses import bits_per_pixel, mse_255, weighted_rate
from texpress.train.train_step import autocast


@dataclass(frozen=True)
class FitSettings:
    steps: int = 3000
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_aux: float = 1e-3
    warmup: int = 100  # linear learning-rate warm-up steps (GDN diverges with a cold start at high lr)
    decay_at: float = 0.85  # lr x 0.1 for the last 15 % of the steps
    clip_grad_norm: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast of the forward pass (the loss in float32)


def device_crops(images: list[np.ndarray], s: FitSettings) -> DeviceCrops:
    """The run's crops: the same (seed, step) -> batch function for every arm, on the device."""
    tensors = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).contiguous().to(s.device)
               for im in images if min(im.shape[:2]) >= s.crop]
    if not tensors:
        raise InputError(f"no training image has both sides of at least {s.crop} px")
    return DeviceCrops(tensors, patch_size=s.crop, batch_size=s.batch, seed=s.seed)


def rd_loss(out: dict, x: torch.Tensor, lam: float) -> tuple[torch.Tensor, float, float]:
    """(loss, bpp, mse_255): bpp from the likelihoods plus lambda times the MSE on 0-255 values. A
    variable-rate model's batch weighs each image's bpp by the rate weight of its level instead."""
    n, _, h, w = x.shape
    bpp = bits_per_pixel(out["likelihoods"], n * h * w)
    mse = mse_255(out["x_hat"], x)
    rate = weighted_rate(out["likelihoods"], out["rate_weight"], h * w) if "rate_weight" in out else bpp
    return rate + lam * mse, float(bpp.detach()), float(mse.detach())


def _optimizers(model: CompressionModel, s: FitSettings):
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    return torch.optim.Adam(main, lr=s.lr), torch.optim.Adam(aux, lr=s.lr_aux), main


def _lr_at(step: int, s: FitSettings) -> float:
    scale = min(1.0, (step + 1) / max(1, s.warmup))
    return s.lr * scale * (0.1 if step >= s.decay_at * s.steps else 1.0)


def fit(model: CompressionModel, lam: float, crops: DeviceCrops, s: FitSettings,
        on_step: Callable[[int, float, float], None] | None = None) -> dict:
    """Train `model` in place for s.steps; returns wall time, steps/s and the last bpp / MSE seen."""
    model.to(s.device).train()
    opt, aux_opt, main = _optimizers(model, s)
    bpp = mse = float("nan")
    start = time.perf_counter()
    for step in range(s.steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, s)
        x = crops.batch(step)
        with autocast(x, torch.bfloat16 if s.amp else None):
            out = model(x)
        out = {**out, "x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
        loss, bpp, mse = rd_loss(out, x, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(main, s.clip_grad_norm)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        model.aux_loss().backward()
        aux_opt.step()
        if on_step is not None:
            on_step(step, bpp, mse)
    if s.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"train_s": round(wall, 2), "steps_per_s": round(s.steps / wall, 3) if wall else None,
            "last_bpp": bpp, "last_mse_255": mse}
