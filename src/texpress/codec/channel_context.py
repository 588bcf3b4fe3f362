"""ELIC's space-channel context (He et al. 2022), sized for a light decoder.

y is split into uneven channel groups (ModelConfig.groups: small ones first, as in ELIC's 16-16-32-64-192
of 320). Each group is coded in two checkerboard passes, anchors then non-anchors (codec.passes), with
its means and scales refined from three sources:
  (a) the hyperprior's means and scales of the group;
  (b) a channel context: one 3x3 conv over the already decoded groups (absent for the first group);
  (c) a spatial context: a masked 5x5 conv (CompressAI's CheckerboardMaskedConv2d) over the group's own
      decoded anchors, zero in the anchor pass (as in CompressAI's CheckerboardLatentCodec).
A 1x1 network per group reads (c, b, a) and adds its output to (a). Its last layer starts at zero, so a
model warm-started from a hyperprior or checkerboard checkpoint codes exactly at the hyperprior's rate
until it trains.

Coding computes the same functions in float64 (GroupContext.exact): the channel conv over the tile,
the spatial conv's 12 unmasked taps and the 1x1 network at the coded pass's positions only; the
parameters are then snapped to the grid (TexpressModel.coding_params), so the decoder reproduces the
encoder's bit for bit. CompressAI's ChannelGroupsLatentCodec is not used for coding for the same
reason as in codec.context (the .tpx coder and its float64 parameters); the group order is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d
from torch import nn

from texpress.codec.context import CONTEXT_KERNEL, masked_taps

CHANNEL_KERNEL = 3


class GroupContext(nn.Module):
    """The means and scales of one channel group of `channels`, after `previous` decoded channels."""

    def __init__(self, channels: int, previous: int):
        super().__init__()
        c = channels
        self.spatial = CheckerboardMaskedConv2d(c, c, CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2, mask_type="A")
        self.channel = nn.Conv2d(previous, c, CHANNEL_KERNEL, padding=CHANNEL_KERNEL // 2) if previous else None
        inputs = c + (c if previous else 0) + 2 * c
        self.refine = nn.Sequential(nn.Conv2d(inputs, 2 * c, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(2 * c, 2 * c, 1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def channel_context(self, previous: torch.Tensor | None, exact: bool) -> torch.Tensor | None:
        """(b) over the whole tile from the decoded earlier groups (float64 when exact)."""
        if self.channel is None:
            return None
        if not exact:
            return self.channel(previous)
        conv = self.channel
        return F.conv2d(previous.double(), conv.weight.double(), conv.bias.double(), padding=CHANNEL_KERNEL // 2)

    def forward(self, side: torch.Tensor, channel: torch.Tensor | None,
                y_hat_anchors: torch.Tensor | None) -> torch.Tensor:
        """(scales, means) of the group everywhere; the anchor pass (y_hat_anchors None) reads no
        spatial context, the non-anchor pass the group's decoded anchors (zero at the non-anchors)."""
        spatial = self.spatial(y_hat_anchors) if y_hat_anchors is not None else side.new_zeros(
            side.shape[0], side.shape[1] // 2, *side.shape[-2:])
        parts = [spatial, *([channel] if channel is not None else []), side]
        return side + self.refine(torch.cat(parts, dim=1))

    @torch.no_grad()
    def exact(self, side: torch.Tensor, channel: torch.Tensor | None, y_hat_anchors: torch.Tensor | None,
              mask: torch.Tensor) -> torch.Tensor:
        """forward() in float64 at the pass's positions (`mask`, (1, 1, H, W)) only; elsewhere `side`."""
        side = side.double()
        n, width, h, w = side.shape
        positions = mask.reshape(-1).nonzero().squeeze(1)
        flat = lambda t: t.reshape(n, t.shape[1], h * w)[:, :, positions]  # noqa: E731
        spatial = (masked_taps(self.spatial, y_hat_anchors.double(), positions) if y_hat_anchors is not None
                   else side.new_zeros(n, width // 2, len(positions)))
        side_p = flat(side)
        parts = [spatial, *([flat(channel)] if channel is not None else []), side_p]
        first, last = self.refine[0], self.refine[2]
        hidden = F.leaky_relu(torch.matmul(first.weight.double()[:, :, 0, 0], torch.cat(parts, dim=1))
                              + first.bias.double()[None, :, None], negative_slope=0.01)
        out = side.clone().reshape(n, width, h * w)
        refined = torch.matmul(last.weight.double()[:, :, 0, 0], hidden) + last.bias.double()[None, :, None]
        out[:, :, positions] = side_p + refined
        return out.reshape(side.shape)


class ChannelGroupsContext(nn.Module):
    """One GroupContext per channel group, in coding order."""

    def __init__(self, groups: tuple[int, ...]):
        super().__init__()
        self.groups = tuple(groups)
        starts = [sum(groups[:k]) for k in range(len(groups))]
        self.group = nn.ModuleList(GroupContext(c, start) for c, start in zip(groups, starts))

    def slices(self) -> list[slice]:
        out, start = [], 0
        for c in self.groups:
            out.append(slice(start, start + c))
            start += c
        return out

    def forward(self, y_hat: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """The non-anchor passes' (scales, means) of every group, in one dense pass over a decoded
        y_hat (anchors and non-anchors; the spatial context reads only the anchors): the work the
        decoder does, counted by codec.complexity (CheckerboardContext is counted the same way)."""
        scales, means = side.chunk(2, dim=1)
        out_s, out_m = [], []
        for k, sl in enumerate(self.slices()):
            ctx = self.group[k]
            channel = ctx.channel_context(y_hat[:, :sl.start], exact=False)
            params = ctx(torch.cat([scales[:, sl], means[:, sl]], dim=1), channel, y_hat[:, sl])
            s, m = params.chunk(2, dim=1)
            out_s.append(s)
            out_m.append(m)
        return torch.cat(out_s + out_m, dim=1)
