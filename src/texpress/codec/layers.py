"""Building blocks of the encoder and generator (HiFiC's ChannelNorm, residual blocks, upscales)."""

from __future__ import annotations

import torch
from torch import nn


class ChannelNorm(nn.Module):
    """Normalise each pixel across channels (HiFiC): no batch statistics, so it is resolution- and
    batch-size-independent, unlike BatchNorm or InstanceNorm."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # E[x^2] - E[x]^2: one pass of two channel means, about 3x faster on CPU than x.var(dim=1)
        mean = x.mean(dim=1, keepdim=True)
        var = (x * x).mean(dim=1, keepdim=True).sub_(mean * mean).clamp_min_(0.0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)


def down_block(c_in: int, c_out: int) -> nn.Sequential:
    """Stride-2 3x3 conv, ChannelNorm, ReLU: halves the resolution."""
    return nn.Sequential(conv(c_in, c_out, 3, stride=2), ChannelNorm(c_out), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3),
            ChannelNorm(channels),
            nn.ReLU(inplace=True),
            conv(channels, channels, 3),
            ChannelNorm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR init (Aitken et al. 2017): every sub-pixel of a PixelShuffle group starts with the same
    kernel, so the upscale is initially a nearest-neighbour resize of a conv and has no checkerboard."""
    c_out, c_in, kh, kw = weight.shape
    sub = torch.empty(c_out // (scale * scale), c_in, kh, kw)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
    return weight


class SubpixelUp(nn.Module):
    """Conv to 4x the channels then PixelShuffle(2), ICNR-initialised: checkerboard-free upscale."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv(c_in, c_out * 4, 3)
        icnr_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def up_block(c_in: int, c_out: int, kind: str) -> nn.Sequential:
    """Doubles the resolution. `deconv` is HiFiC's 3x3 stride-2 transposed conv (kernel not divisible
    by the stride, so it can imprint checkerboards); `subpixel` avoids them."""
    if kind == "deconv":
        up: nn.Module = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
    else:
        up = SubpixelUp(c_in, c_out)
    return nn.Sequential(up, ChannelNorm(c_out), nn.ReLU(inplace=True))
