"""The coding order of y within one tile, shared by the encoder, the decoder, the model's forward pass
and encode effort (codec.refine), so that all compute the same means and scales.

A hyperprior model codes y in one pass. A checkerboard model codes the anchors first, then the
non-anchors with means and scales refined from the decoded anchors of the same tile (codec.context).
A channel-groups model codes its channel groups in order, each in those two passes, the means and
scales of a group refined from the decoded earlier groups and from its own decoded anchors
(codec.channel_context): 2 x groups passes. The contexts never cross a tile's edge, so tiles decode
independently. A variable-rate model codes g * y (codec.gain).

`quantise(scales, means, mask, channels)` is the side-specific part: the encoder turns its latents
(channels `channels` of them) into symbols and entropy-codes them, the decoder entropy-decodes them,
training and effort round them with a gradient; all return the symbols as a float tensor over the
whole tile and the pass's channels (only the `mask` positions, or all with mask None, are used).

`model` is a codec.model.TexpressModel, which runs this order in its forward pass (this module sits
below it, so it names it nn.Module).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from texpress.codec.context import anchor_mask

Quantise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, slice], torch.Tensor]
ALL = slice(None)


def passes(model: nn.Module) -> int:
    """Coding passes of y per tile (the .tpx header records it)."""
    kind = model.config.entropy
    return 1 if kind == "hyperprior" else 2 if kind == "checkerboard" else 2 * len(model.config.groups)


def _gained(gain: torch.Tensor | None, channels: slice) -> torch.Tensor | None:
    return None if gain is None else gain[:, channels]


def code_y(model: nn.Module, side: torch.Tensor, gain: torch.Tensor | None, quantise: Quantise,
           anchors: torch.Tensor | None = None, exact: bool | None = None,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scales, means, symbols) of g * y over one tile, pass by pass, from its hyperprior parameters
    `side` and the gain (None for a single rate); y_hat = (symbols + means) / g.

    exact (default: outside training): the contexts in float64 and the parameters snapped to the grid,
    as coding needs; otherwise the differentiable float32 modules. `anchors` is the tile's anchor mask
    (default: (row + column) even from the tile's corner); `dtype` that of g."""
    exact = not model.training if exact is None else exact
    kind = model.config.entropy
    g = 1.0 if gain is None else gain.to(dtype)
    scales, means = model.coding_params(side, gain, snap=exact)
    if kind == "hyperprior":
        return scales, means, quantise(scales, means, None, ALL)
    if anchors is None:
        anchors = anchor_mask(*side.shape[-2:], device=side.device)
    if kind == "checkerboard":
        symbols_a = quantise(scales, means, anchors, ALL)
        y_hat_a = torch.where(anchors, (symbols_a + means) / g, 0.0)
        context = model.context.exact(y_hat_a, side) if exact else model.context(y_hat_a, side)
        scales_n, means_n = model.coding_params(context, gain, snap=exact)
        symbols_n = quantise(scales_n, means_n, ~anchors, ALL)
        return (torch.where(anchors, scales, scales_n), torch.where(anchors, means, means_n),
                torch.where(anchors, symbols_a, symbols_n))
    side_scales, side_means = side.chunk(2, dim=1)
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    y_hat: list[torch.Tensor] = []
    for k, channels in enumerate(model.context.slices()):
        ctx, g_k, gain_k = model.context.group[k], (g if gain is None else g[:, channels]), _gained(gain, channels)
        side_k = torch.cat([side_scales[:, channels], side_means[:, channels]], dim=1)
        channel = ctx.channel_context(torch.cat(y_hat, dim=1) if y_hat else None, exact)

        def params(y_hat_a: torch.Tensor | None, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = ctx.exact(side_k, channel, y_hat_a, mask) if exact else ctx(side_k, channel, y_hat_a)
            return model.coding_params(p, gain_k, snap=exact)

        scales_a, means_a = params(None, anchors)
        symbols_a = quantise(scales_a, means_a, anchors, channels)
        y_hat_a = torch.where(anchors, (symbols_a + means_a) / g_k, 0.0)
        scales_n, means_n = params(y_hat_a, ~anchors)
        symbols_n = quantise(scales_n, means_n, ~anchors, channels)
        group = (torch.where(anchors, scales_a, scales_n), torch.where(anchors, means_a, means_n),
                 torch.where(anchors, symbols_a, symbols_n))
        out.append(group)
        y_hat.append((group[2] + group[1]) / g_k)
    return tuple(torch.cat(parts, dim=1) for parts in zip(*out))  # type: ignore[return-value]


@torch.inference_mode()
def code_tile(model: nn.Module, side: torch.Tensor, gain: torch.Tensor | None,
              quantise: Quantise) -> torch.Tensor:
    """y_hat of one tile from its hyperprior parameters `side` (float64) and the gain (float64 or None)."""
    _, means, symbols = code_y(model, side, gain, quantise, exact=True)
    return (symbols + means) / (1.0 if gain is None else gain.float())


def select(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The values of one pass, in the order they are coded (channel, row, column)."""
    return t.reshape(-1) if mask is None else t[mask.expand_as(t)]


def place(values: torch.Tensor, like: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The inverse of select: a tensor shaped like `like`, `values` at the pass's positions, zero elsewhere."""
    if mask is None:
        return values.reshape(like.shape).to(like.dtype)
    out = torch.zeros_like(like)
    out[mask.expand_as(like)] = values.to(like.dtype)
    return out
