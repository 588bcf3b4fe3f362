"""Encode effort: search, for each image, the latents that the unchanged decoder turns into the best
rate-distortion trade-off (docs/effort.md).

The encoder is amortised: one pass gives y, and z = h_a(y). At effort > 0 those are only the start:
y and z are optimised with Adam against the model's own objective, lambda * bpp + k_m * MSE (0-255
scale), with the rate from the entropy models' likelihoods and the distortion through the generator.
Rounding has no gradient, so the loss sees a surrogate of it (`mixed`: the rate of noisy latents and
the distortion of rounded ones with a straight-through gradient; `sga`: stochastic Gumbel annealing,
Yang, Bamler & Mandt 2020). The bitstream then codes round(y) and round(z) exactly as at effort 0:
the decoder, the model and the file format do not change.

Memory stays bounded: the image is refined piece by piece (REFINE_TILE pixels a side), in raster
order. Each piece optimises its own y and z while its neighbours' latents, already refined or still
the encoder's, give the generator and the hyper-synthesis their halos (codec.tiling), so the
latents of the whole image stay one consistent field and the decoded tiles join without seams.

Determinism: the noise comes from a generator seeded per piece, and the whole encode runs under a
fixed intra-op thread count (REFINE_THREADS), because float reductions, and with them the rounding
of a latent near .5, change with the number of threads. Same input, model and effort: same bytes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from texpress.codec import tiling
from texpress.codec.model import DOWNSCALE, PAD_MULTIPLE, TexpressModel
from texpress.errors import ConfigError

REFINE_TILE = 512  # pixels per side of a refined piece: bounds the activations kept for the backward pass
REFINE_THREADS = 1  # the intra-op thread count every encode at effort > 0 runs under (same bytes everywhere)
HIFIC_K_M = 0.075 * 2**-5  # the MSE weight (0-255 scale) every shipped model was trained with
SEED = 0x7E5


@dataclass(frozen=True)
class Effort:
    """One effort level: how many Adam steps and how they are taken. The levels use the surrogate and
    schedule that did best per second in the comparison of docs/effort.md (mixed, cosine, a large
    learning rate); `sga` and `constant` are kept to rerun it (benchmarks/effort.py --compare)."""

    level: int
    iterations: int
    lr: float = 0.0
    surrogate: str = "mixed"  # "mixed" or "sga"
    schedule: str = "cosine"  # "constant" or "cosine" (decays the learning rate to lr_end_frac * lr)
    lr_end_frac: float = 0.1


EFFORTS: tuple[Effort, ...] = (
    Effort(0, 0),
    Effort(1, 20, lr=0.16),
    Effort(2, 50, lr=0.12),
    Effort(3, 150, lr=0.08),
)
TOP_EFFORT = EFFORTS[-1].level


def check_effort(value) -> int:
    """An effort level from user input (int or text): 0..TOP_EFFORT, else a one-line ConfigError."""
    text = str(value).strip()
    try:
        level = int(text)
    except ValueError:
        raise ConfigError(f"effort must be a whole number from 0 to {TOP_EFFORT}, got {text!r}") from None
    if isinstance(value, bool) or not 0 <= level <= TOP_EFFORT:
        raise ConfigError(f"effort must be a whole number from 0 to {TOP_EFFORT}, got {text!r}")
    return level


def check_lambda(value) -> float | None:
    if value is None:
        return None
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"lambda must be a positive number, got {value!r}") from None
    if not math.isfinite(lam) or lam <= 0:
        raise ConfigError(f"lambda must be a positive number, got {value!r}")
    return lam


@dataclass(frozen=True)
class Objective:
    """What refinement minimises: lam * bpp + k_m * MSE_255. Adversarial models get the same: measured
    on lite-q1-gan, it keeps their texture (texture distance and HF energy improve), while the rate
    alone (rate_only, kept for that comparison in benchmarks/effort.py) washes it out (docs/effort.md)."""

    lam: float
    k_m: float = HIFIC_K_M
    rate_only: bool = False


def objective_for(meta: dict, shipped: dict, lam: float | None = None) -> Objective:
    """The objective of a model from its checkpoint meta, else its shipped-manifest entry: `lambda`
    (the rate weight it was trained with) and `k_m` (its MSE weight, HiFiC's by default)."""
    record = {**shipped, **{k: v for k, v in meta.items() if v is not None}}
    if lam is None:
        lam = record.get("lambda")
    if lam is None:
        raise ConfigError("the model records no rate weight (lambda) to refine against; pass --lambda")
    return Objective(lam=float(lam), k_m=float(record.get("k_m", HIFIC_K_M)))


@contextmanager
def fixed_threads(n: int = REFINE_THREADS) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def _frozen(model: TexpressModel) -> Iterator[None]:
    """Gradients for the latents only: no parameter accumulates a .grad."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _uniform(gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(like.shape, generator=gen, dtype=like.dtype) - 0.5).to(like.device)


def _sga_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """Stochastic Gumbel annealing: a soft, sampled choice between floor(v) and floor(v) + 1 whose
    sharpness grows as tau falls (Yang, Bamler & Mandt 2020, eq. 6)."""
    eps = 1e-5
    lo = torch.floor(v).detach()
    frac = v - lo
    logits = torch.stack([-torch.atanh(frac.clamp(-1 + eps, 1 - eps)),
                          -torch.atanh((1 - frac).clamp(-1 + eps, 1 - eps))], dim=-1) / tau
    u = torch.rand(logits.shape, generator=gen, dtype=v.dtype).clamp_(1e-10, 1 - 1e-10).to(v.device)
    gumbel = -torch.log(-torch.log(u))
    w = torch.softmax((logits + gumbel) / tau, dim=-1)
    return lo + w[..., 1]


def _ste_round(v: torch.Tensor) -> torch.Tensor:
    return (torch.round(v) - v).detach() + v


def _z_bits(model: TexpressModel, z: torch.Tensor) -> torch.Tensor:
    """Bits of z (1xCxHxW, on the coding grid) under the factorized prior."""
    eb = model.entropy_bottleneck
    c = z.shape[1]
    values = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
    likelihood, _, _ = eb._likelihood(values)
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood).sum()


def _y_bits(model: TexpressModel, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    gc = model.gaussian_conditional
    likelihood = gc._likelihood(y, scales, means)
    if gc.use_likelihood_bound:
        likelihood = gc.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood).sum()


def _hyper_params(model: TexpressModel, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales and means of y with gradients (model._y_params snaps them to a grid outside training)."""
    scales, means = model.h_s(z_hat).chunk(2, dim=1)
    return scales, means


@dataclass
class Piece:
    """One refined piece: its own latents (variables) inside the crops that give them context."""

    y_box: tuple[int, int, int, int]  # the piece in y pixels (top, bottom, left, right)
    z_box: tuple[int, int, int, int]
    y_win: tuple[int, int, int, int]  # the generator's input window in y pixels
    z_win: tuple[int, int, int, int]  # the hyper-synthesis's input window in z pixels


def _window(box, halo, h, w):
    t0, t1 = tiling.halo_window(box[0], box[1], halo, h)
    l0, l1 = tiling.halo_window(box[2], box[3], halo, w)
    return t0, t1, l0, l1


def pieces(y_shape: tuple[int, int], gen_halo: int, tile: int = REFINE_TILE) -> list[Piece]:
    """The refinement pieces over the padded image, row by row."""
    yh, yw = y_shape
    grid = tiling.Grid(yh * DOWNSCALE, yw * DOWNSCALE, tile)
    r = PAD_MULTIPLE // DOWNSCALE
    out = []
    for top, bottom, left, right in grid.tiles():
        yb = tuple(v // DOWNSCALE for v in (top, bottom, left, right))
        zb = tuple(v // PAD_MULTIPLE for v in (top, bottom, left, right))
        out.append(Piece(yb, zb, _window(yb, gen_halo, yh, yw), _window(zb, tiling.HYPER_HALO, yh // r, yw // r)))
    return out


def _crop(t: torch.Tensor, box) -> torch.Tensor:
    return t[:, :, box[0]:box[1], box[2]:box[3]]


def _inner(box, win) -> tuple[slice, ...]:
    """Where `box` sits inside the crop `win`."""
    return (slice(None), slice(None), slice(box[0] - win[0], box[1] - win[0]), slice(box[2] - win[2], box[3] - win[2]))


def _lr(effort: Effort, step: int) -> float:
    if effort.schedule == "constant" or effort.iterations <= 1:
        return effort.lr
    frac = step / (effort.iterations - 1)
    end = effort.lr * effort.lr_end_frac
    return end + 0.5 * (effort.lr - end) * (1 + math.cos(math.pi * frac))


def _tau(effort: Effort, step: int) -> float:
    """SGA's temperature: 0.5 falling exponentially to 0.05 over the run."""
    frac = step / max(1, effort.iterations - 1)
    return 0.5 * math.exp(math.log(0.1) * frac)


def refine_piece(model: TexpressModel, rgb: np.ndarray, y: torch.Tensor, z: torch.Tensor, piece: Piece,
                 effort: Effort, objective: Objective, seed: int,
                 on_step: Callable[[], None] | None = None) -> list[float]:
    """Optimise y and z inside `piece` in place; returns the loss after each step."""
    d = DOWNSCALE
    height, width = rgb.shape[:2]
    yb, zb, yw, zw = piece.y_box, piece.z_box, piece.y_win, piece.z_win
    # pixels the piece's distortion is measured on: its own, inside the real image
    top, bottom, left, right = yb[0] * d, min(yb[1] * d, height), yb[2] * d, min(yb[3] * d, width)
    target = torch.from_numpy(np.array(rgb[top:bottom, left:right])).permute(2, 0, 1)[None]
    target = target.to(y.device, torch.float32)
    pixels = (bottom - top) * (right - left)
    out_sl = (slice(None), slice(None), slice(top - yw[0] * d, bottom - yw[0] * d),
              slice(left - yw[2] * d, right - yw[2] * d))
    y_ctx, z_ctx = _crop(y, yw).clone(), _crop(z, zw).clone()
    y_in, z_in = _inner(yb, yw), _inner(zb, zw)
    r = PAD_MULTIPLE // DOWNSCALE
    # the y rows and columns of the hyper window that the piece's own y occupies
    p_sl = (slice(None), slice(None), slice((zb[0] - zw[0]) * r, (zb[1] - zw[0]) * r),
            slice((zb[2] - zw[2]) * r, (zb[3] - zw[2]) * r))
    y_var = _crop(y, yb).clone().requires_grad_(True)
    z_var = _crop(z, zb).clone().requires_grad_(True)
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([y_var, z_var], lr=effort.lr)

    def loss_of(y_p: torch.Tensor, z_p: torch.Tensor, step: int, hard: bool = False) -> torch.Tensor:
        """The surrogate loss at `step`, or (hard) the loss of what the bitstream would code."""
        z_hat = (torch.round(z_p - medians) if hard else _ste_round(z_p - medians)) + medians
        z_rate = z_hat if hard else z_p + _uniform(gen, z_p)
        z_full = z_ctx.clone()
        z_full[z_in] = z_hat
        scales, means = _hyper_params(model, z_full)
        scales, means = scales[p_sl], means[p_sl]
        if hard:
            y_rate = y_dec = torch.round(y_p - means) + means
        elif effort.surrogate == "sga":
            y_rate = y_dec = _sga_round(y_p - means, _tau(effort, step), gen) + means
            z_rate = _sga_round(z_p - medians, _tau(effort, step), gen) + medians
        else:
            y_rate = y_p + _uniform(gen, y_p)
            y_dec = _ste_round(y_p - means) + means
        loss = objective.lam * (_y_bits(model, y_rate, scales, means) + _z_bits(model, z_rate)) / pixels
        if not objective.rate_only:
            y_full = y_ctx.clone()
            y_full[y_in] = y_dec
            x_hat = model.generator(y_full)[out_sl]
            loss = loss + objective.k_m * torch.mean((x_hat.clamp(0, 1) * 255.0 - target) ** 2)
        return loss

    with torch.no_grad():
        start = float(loss_of(y_var, z_var, 0, hard=True))
    losses: list[float] = []
    for step in range(effort.iterations):
        for group in opt.param_groups:
            group["lr"] = _lr(effort, step)
        loss = loss_of(y_var, z_var, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    with torch.no_grad():
        end = float(loss_of(y_var, z_var, effort.iterations, hard=True))
    if end < start:  # a search that made the coded piece worse (a step too long) keeps the encoder's latents
        with torch.inference_mode():  # y and z are the encoder's inference tensors, written in place
            y[:, :, yb[0]:yb[1], yb[2]:yb[3]] = y_var.detach()
            z[:, :, zb[0]:zb[1], zb[2]:zb[3]] = z_var.detach()
    return losses


def refine(model: TexpressModel, rgb: np.ndarray, y: torch.Tensor, z: torch.Tensor, effort: Effort,
           objective: Objective, on_step: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine the whole image's y and z (the encoder's, from codec.tiling) in place, piece by piece:
    no second copy of them, so a 100-megapixel image needs one piece's activations more than at
    effort 0."""
    halo = tiling.generator_halo(model.config)
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model):
        for i, piece in enumerate(pieces(tuple(y.shape[-2:]), halo) if effort.iterations else []):
            refine_piece(model, rgb, y, z, piece, effort, objective, SEED + i, on_step)
    return y, z


def steps_for(effort: Effort, height: int, width: int) -> int:
    """Adam steps an image of this size takes at `effort` (for progress bars)."""
    if effort.iterations == 0:
        return 0
    yh, yw = (-(-size // PAD_MULTIPLE) * PAD_MULTIPLE // DOWNSCALE for size in (height, width))
    return effort.iterations * len(pieces((yh, yw), 0))
