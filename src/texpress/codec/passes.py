"""The coding order of y within one tile, shared by the encoder and the decoder so that both compute
the same means and scales bit for bit.

A hyperprior model codes y in one pass. A checkerboard model codes the anchors first, then the
non-anchors with means and scales refined from the decoded anchors of the same tile (codec.context):
the context never crosses a tile's edge, so tiles decode independently. A variable-rate model codes
g * y (codec.gain).

`code_pass(scales, means, mask)` is the side-specific part: the encoder turns its latents into
symbols and entropy-codes them, the decoder entropy-decodes them; both return the symbols as a float
tensor over the whole tile (only the `mask` positions, or all with mask None, are used).
"""

from __future__ import annotations

from typing import Callable

import torch

from texpress.codec.context import anchor_mask
from texpress.codec.model import TexpressModel

CodePass = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def passes(model: TexpressModel) -> int:
    return 2 if model.has_context else 1


@torch.inference_mode()
def code_tile(model: TexpressModel, side: torch.Tensor, gain: torch.Tensor | None, code_pass: CodePass) -> torch.Tensor:
    """y_hat of one tile from its hyperprior parameters `side` (float64) and the gain (float64 or None)."""
    scales, means = model.coding_params(side, gain)
    g = 1.0 if gain is None else gain.float()
    if not model.has_context:
        return (code_pass(scales, means, None) + means) / g
    anchors = anchor_mask(*scales.shape[-2:], device=scales.device)
    symbols_a = code_pass(scales, means, anchors)
    y_hat_a = torch.where(anchors, (symbols_a + means) / g, 0.0)
    scales_n, means_n = model.coding_params(model.context_params(y_hat_a, side), gain)
    symbols_n = code_pass(scales_n, means_n, ~anchors)
    return torch.where(anchors, (symbols_a + means) / g, (symbols_n + means_n) / g)


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
