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

Determinism: the noise comes from a generator seeded per piece, and the whole encode runs under the
fixed intra-op thread count of every coding (codec.threads), because float reductions, and with them
the rounding of a latent near .5, change with the number of threads. Same input, model and effort:
same bytes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from texpress.codec import passes, tiling
from texpress.codec.context import anchor_mask
from texpress.codec.model import DOWNSCALE, PAD_MULTIPLE, TexpressModel
from texpress.errors import ConfigError

REFINE_TILE = 512  # pixels per side of a refined piece: bounds the activations kept for the backward pass
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
    z_lr_frac: float = 1.0  # z's learning rate as a fraction of y's
    coded_units: bool = False  # steps in units of the coded g * y (a variable-rate model's bins) instead of y


EFFORTS: tuple[Effort, ...] = (
    Effort(0, 0),
    Effort(1, 20, lr=0.16),
    Effort(2, 50, lr=0.12),
    Effort(3, 150, lr=0.08),
)
# Models with a context (checkerboard, channel groups) or a variable rate (lite-vr): tuned on lite-vr at
# qualities 0, 50 and 100 (docs/effort.md; not re-tuned for channel groups); a smaller learning rate than
# the hyperprior models' levels, which at 20 steps saved a third less there and at the lowest quality stalled.
CONTEXT_EFFORTS: tuple[Effort, ...] = (
    Effort(0, 0),
    Effort(1, 20, lr=0.08),
    Effort(2, 50, lr=0.08),
    Effort(3, 150, lr=0.05),
)
TOP_EFFORT = EFFORTS[-1].level


def levels_for(model: TexpressModel) -> tuple[Effort, ...]:
    """The effort levels of a model: CONTEXT_EFFORTS for a context or variable-rate model, else EFFORTS."""
    return CONTEXT_EFFORTS if model.has_context or model.config.variable_rate else EFFORTS


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


def _y_bits(model: TexpressModel, offsets: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Bits of y values at `offsets` from their means (g * y - g * mu, on the coded scale) under the
    Gaussian conditional with these (gained) scales."""
    gc = model.gaussian_conditional
    likelihood = gc._likelihood(offsets, scales)
    if gc.use_likelihood_bound:
        likelihood = gc.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood).sum()


Box = tuple[int, int, int, int]  # (top, bottom, left, right)


@dataclass
class Piece:
    """One refined piece: its own latents (variables) inside the crops that give them context."""

    y_box: Box  # the piece in y pixels
    z_box: Box
    y_win: Box  # the generator's input window in y pixels
    z_win: Box  # the hyper-synthesis's input window in z pixels (it covers y_win plus its halo)
    tiles: tuple[Box, ...] = ()  # the coding tiles (y pixels) that meet y_win: the context stays inside each


def _window(box, halo, h, w):
    t0, t1 = tiling.halo_window(box[0], box[1], halo, h)
    l0, l1 = tiling.halo_window(box[2], box[3], halo, w)
    return t0, t1, l0, l1


def _meet(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[1] and box[2] < box[3] else None


def pieces(y_shape: tuple[int, int], gen_halo: int, grid: tiling.Grid | None = None,
           tile: int = REFINE_TILE) -> list[Piece]:
    """The refinement pieces: each coding tile of `grid` (default: one piece) cut into `tile`-px
    pieces, tile by tile and row by row inside a tile, so a piece never straddles a coding tile."""
    yh, yw = y_shape
    d, r = DOWNSCALE, PAD_MULTIPLE // DOWNSCALE
    grid = grid if grid is not None else tiling.Grid(yh * d, yw * d, 0)
    coding = [tuple(v // d for v in t) for t in grid.tiles()]
    out = []
    for top, bottom, left, right in grid.tiles():
        for t in range(top, bottom, tile):
            for l in range(left, right, tile):
                yb = tuple(v // d for v in (t, min(t + tile, bottom), l, min(l + tile, right)))
                zb = tuple(v * d // PAD_MULTIPLE for v in yb)
                y_win = _window(yb, gen_halo, yh, yw)
                z_cover = (y_win[0] // r, -(-y_win[1] // r), y_win[2] // r, -(-y_win[3] // r))
                z_win = _window(z_cover, tiling.HYPER_HALO, yh // r, yw // r)
                tiles = tuple(m for c in coding if (m := _meet(c, y_win)) is not None)
                out.append(Piece(yb, zb, y_win, z_win, tiles))
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


class _Quantiser:
    """What the loss sees of round(v) for offsets v from the means: `rate` (what the entropy model is
    charged for) and `dec` (what the decoder reads). hard: the bitstream's own rounding; mixed:
    uniform noise for the rate, a straight-through rounding for the decoder; sga: one annealed
    soft rounding for both."""

    def __init__(self, mode: str, gen: torch.Generator, tau: float = 1.0):
        self.mode, self.gen, self.tau = mode, gen, tau

    def dec(self, v: torch.Tensor) -> torch.Tensor:
        if self.mode == "hard":
            return torch.round(v)
        if self.mode == "sga":
            return _sga_round(v, self.tau, self.gen)
        return _ste_round(v)

    def rate(self, v: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return v + _uniform(self.gen, v) if self.mode == "mixed" else dec


def _anchors(box: Box, device) -> torch.Tensor:
    """The anchor mask over a y box (the parity is that of the whole image: tiles have even sides)."""
    return anchor_mask(box[1] - box[0], box[3] - box[2], device) ^ bool((box[0] + box[2]) % 2)


def piece_loss(model: TexpressModel, piece: Piece, y_p: torch.Tensor, z_p: torch.Tensor, y_ctx: torch.Tensor,
               z_ctx: torch.Tensor, gain: torch.Tensor | None, q: _Quantiser, target: torch.Tensor,
               objective: Objective) -> torch.Tensor:
    """The model's objective for one piece: lam * (bits of its y and z) / pixels + k_m * MSE_255 of
    its pixels. y is coded as g * y (g = 1 for a single-rate model), in the coding order of
    codec.passes (the same code): with a context model each pass is charged under its own means and
    scales, whose context reads the (quantised) latents of the same coding tile. The generator reads
    the piece's quantised latents and, around them, its neighbours' (from y_ctx and z_ctx, the
    current latents of the windows)."""
    d, r = DOWNSCALE, PAD_MULTIPLE // DOWNSCALE
    yb, zb, yw, zw = piece.y_box, piece.z_box, piece.y_win, piece.z_win
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    z_off = z_p - medians
    z_dec = q.dec(z_off)
    z_bits = _z_bits(model, q.rate(z_off, z_dec) + medians)
    z_full = torch.round(z_ctx - medians) + medians  # the neighbours' z as the decoder reads it
    z_full[_inner(zb, zw)] = z_dec + medians
    side = model.h_s(z_full)[_inner(yw, (zw[0] * r, zw[1] * r, zw[2] * r, zw[3] * r))]
    g = 1.0 if gain is None else gain
    y_full = y_ctx.clone()
    y_full[_inner(yb, yw)] = y_p
    y_g = y_full * g
    anchors = _anchors(yw, y_g.device)
    regions = [_inner(tile, yw) for tile in piece.tiles] if model.has_context else [(slice(None),) * 4]
    coded = []
    for sl in regions:  # a context never reads across a coding tile's edge
        def quantise(scales, means, mask, channels, y_t=y_g[sl]):
            return q.dec(y_t[:, channels] - means)

        coded.append(passes.code_y(model, side[sl], gain, quantise, anchors=anchors[sl], exact=False))
    scales, means, v_dec = (_assemble([c[i] for c in coded], regions, y_g) for i in range(3))
    v = y_g - means
    own = _inner(yb, yw)
    pixels = target.shape[-2] * target.shape[-1]
    y_bits = _y_bits(model, q.rate(v[own], v_dec[own]), scales[own])
    loss = objective.lam * (y_bits + z_bits) / pixels
    if not objective.rate_only:
        x_hat = model.generator((v_dec + means) / g)
        top, left = yb[0] * d - yw[0] * d, yb[2] * d - yw[2] * d
        x_hat = x_hat[:, :, top:top + target.shape[-2], left:left + target.shape[-1]]
        loss = loss + objective.k_m * torch.mean((x_hat.clamp(0, 1) * 255.0 - target) ** 2)
    return loss


def _assemble(parts: list[torch.Tensor], regions: list[tuple[slice, ...]], like: torch.Tensor) -> torch.Tensor:
    """One tensor over the window from the coding tiles' parts (differentiable)."""
    if len(parts) == 1:
        return parts[0]
    out = like.new_zeros(like.shape)
    for part, sl in zip(parts, regions):
        out[sl] = part
    return out


def refine_piece(model: TexpressModel, rgb: np.ndarray, y: torch.Tensor, z: torch.Tensor, piece: Piece,
                 effort: Effort, objective: Objective, seed: int, gain: torch.Tensor | None = None,
                 on_step: Callable[[], None] | None = None) -> list[float]:
    """Optimise y and z inside `piece` in place; returns the loss after each step."""
    d = DOWNSCALE
    height, width = rgb.shape[:2]
    yb, zb = piece.y_box, piece.z_box
    # pixels the piece's distortion is measured on: its own, inside the real image
    top, bottom, left, right = yb[0] * d, min(yb[1] * d, height), yb[2] * d, min(yb[3] * d, width)
    target = torch.from_numpy(np.array(rgb[top:bottom, left:right])).permute(2, 0, 1)[None]
    target = target.to(y.device, torch.float32)
    y_ctx, z_ctx = _crop(y, piece.y_win).clone(), _crop(z, piece.z_win).clone()
    y_var = _crop(y, yb).clone().requires_grad_(True)
    z_var = _crop(z, zb).clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([{"params": [y_var], "scale": 1.0}, {"params": [z_var], "scale": effort.z_lr_frac}],
                           lr=effort.lr)

    def loss_of(q: _Quantiser) -> torch.Tensor:
        return piece_loss(model, piece, y_var, z_var, y_ctx, z_ctx, gain, q, target, objective)

    hard = _Quantiser("hard", gen)
    with torch.no_grad():
        start = float(loss_of(hard))  # the loss of what the bitstream would code
    losses: list[float] = []
    for step in range(effort.iterations):
        for group in opt.param_groups:
            group["lr"] = _lr(effort, step) * group["scale"]
        loss = loss_of(_Quantiser(effort.surrogate, gen, _tau(effort, step)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    with torch.no_grad():
        end = float(loss_of(hard))
    if end < start:  # a search that made the coded piece worse (a step too long) keeps the encoder's latents
        with torch.inference_mode():  # y and z are the encoder's inference tensors, written in place
            y[:, :, yb[0]:yb[1], yb[2]:yb[3]] = y_var.detach()
            z[:, :, zb[0]:zb[1], zb[2]:zb[3]] = z_var.detach()
    return losses


def refine(model: TexpressModel, rgb: np.ndarray, y: torch.Tensor, z: torch.Tensor, effort: Effort,
           objective: Objective, on_step: Callable[[], None] | None = None, grid: tiling.Grid | None = None,
           gain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine the whole image's y and z (the encoder's, from codec.tiling) in place, piece by piece:
    no second copy of them, so a 100-megapixel image needs one piece's activations more than at
    effort 0. `grid` is the coding tile grid (the context stays inside each tile), `gain` the
    per-channel gain of a variable-rate model at the coded quality."""
    halo = tiling.generator_halo(model.config)
    gain = None if gain is None else gain.detach().float()
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model):
        gain = None if gain is None else gain.clone()  # a normal tensor (the encoder's is an inference one)
        for i, piece in enumerate(pieces(tuple(y.shape[-2:]), halo, grid) if effort.iterations else []):
            refine_piece(model, rgb, y, z, piece, effort, objective, SEED + i, gain, on_step)
    return y, z


def steps_for(effort: Effort, height: int, width: int, tile: int | None = None) -> int:
    """Adam steps an image of this size takes at `effort` (for progress bars)."""
    if effort.iterations == 0:
        return 0
    grid = tiling.Grid.for_image(height, width, tile)
    return effort.iterations * len(pieces((grid.height // DOWNSCALE, grid.width // DOWNSCALE), 0, grid))
