"""The checkerboard context model (He et al. 2021), on CompressAI's CheckerboardMaskedConv2d.

y is coded in two passes. The anchors, where (row + column) is even, are coded with the hyperprior's
means and scales alone. A masked 5x5 conv then reads the decoded anchors around every non-anchor
(12 of its 24 neighbours), and a small 1x1 network refines the hyperprior's means and scales of the
non-anchors from it. Both passes decode in parallel over the whole latent.

Coding computes the same function in float64 at the non-anchors only (CheckerboardContext.exact):
the 12 unmasked taps of the context conv as 12 matrix products over the non-anchor positions, and
the 1x1 refinement there, about a seventh of the dense conv's work.

The refinement is a residual on the hyperprior's parameters whose last layer starts at zero, so a
model with this context starts out exactly as the hyperprior model it was warm-started from.
Coding (codec.api) does not use CompressAI's CheckerboardLatentCodec.compress: the .tpx format codes
with its own bounds-safe rANS tables (codec.entropy) from float64 parameters that the decoder
reproduces bit for bit; the two-pass order and the masks are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d
from torch import nn

CONTEXT_KERNEL = 5


def anchor_mask(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 1, H, W) booleans, True at the anchors ((row + column) even): the first pass."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


def masked_taps(conv: CheckerboardMaskedConv2d, y: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The masked conv of float64 `y` (N, C, H, W) at the flat `positions` only, (N, out, P) float64:
    its 12 unmasked taps (those that see anchors) as 12 matrix products."""
    n, c, h, w = y.shape
    weight = (conv.weight * conv.mask).double()
    pad = CONTEXT_KERNEL // 2
    padded = F.pad(y, (pad, pad, pad, pad))
    ctx = conv.bias.double()[None, :, None].expand(n, -1, len(positions)).clone()
    for i, j in conv.mask[0, 0].nonzero().tolist():
        shifted = padded[:, :, i:i + h, j:j + w].reshape(n, c, h * w)[:, :, positions]
        ctx += torch.matmul(weight[:, :, i, j], shifted)
    return ctx


class CheckerboardContext(nn.Module):
    """Means and scales of the non-anchors from the decoded anchors and the hyperprior's parameters."""

    def __init__(self, latent_channels: int, context_channels: int):
        super().__init__()
        m = latent_channels
        self.context = CheckerboardMaskedConv2d(m, context_channels, CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2,
                                                mask_type="A")
        self.refine = nn.Sequential(
            nn.Conv2d(context_channels + 2 * m, 2 * m, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(2 * m, 2 * m, 1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, y_hat_anchors: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Parameters (scales, means) for the non-anchors; y_hat_anchors is zero at the non-anchors."""
        return hyper + self.refine(torch.cat([self.context(y_hat_anchors), hyper], dim=1))

    @torch.no_grad()
    def exact(self, y_hat_anchors: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """forward() in float64, computed at the non-anchors only (the anchors keep `hyper`): what the
        encoder and the decoder both run, so that they reproduce each other's parameters."""
        y, hyper = y_hat_anchors.double(), hyper.double()
        n, c, h, w = y.shape
        positions = (~anchor_mask(h, w, y.device)).reshape(-1).nonzero().squeeze(1)
        ctx = masked_taps(self.context, y, positions)
        side = hyper.reshape(n, hyper.shape[1], h * w)[:, :, positions]
        first, last = self.refine[0], self.refine[2]
        hidden = F.leaky_relu(torch.matmul(first.weight.double()[:, :, 0, 0], torch.cat([ctx, side], dim=1))
                              + first.bias.double()[None, :, None], negative_slope=0.01)
        out = hyper.clone().reshape(n, hyper.shape[1], h * w)
        out[:, :, positions] = side + torch.matmul(last.weight.double()[:, :, 0, 0], hidden) + last.bias.double()[None, :, None]
        return out.reshape(hyper.shape)
