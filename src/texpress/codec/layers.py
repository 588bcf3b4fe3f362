"""Building blocks of the encoder and generator: HiFiC's ChannelNorm + ReLU or Balle's GDN/IGDN,
stride-2 convs, residual blocks and three kinds of upscale."""

from __future__ import annotations

import torch
from compressai.layers import GDN
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
    """A k x k conv that keeps the size (stride 1) or halves it exactly (stride 2), odd or even k."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2 if stride > 1 else k // 2)


def norm_layers(channels: int, norm: str, inverse: bool = False) -> list[nn.Module]:
    """What follows a conv: ChannelNorm + ReLU (HiFiC), or GDN (encoder) / IGDN (generator), which
    both normalises and is the nonlinearity (Balle et al. 2017)."""
    if norm == "gdn":
        return [GDN(channels, inverse=inverse)]
    return [ChannelNorm(channels), nn.ReLU(inplace=True)]


def down_block(c_in: int, c_out: int, k: int = 3, norm: str = "channelnorm") -> nn.Sequential:
    """Stride-2 k x k conv and its normalisation: halves the resolution."""
    return nn.Sequential(conv(c_in, c_out, k, stride=2), *norm_layers(c_out, norm))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str = "channelnorm"):
        super().__init__()
        if norm == "gdn":  # no normalisation inside the branch: the trunk sits between IGDNs
            layers: list[nn.Module] = [conv(channels, channels, 3), nn.LeakyReLU(inplace=True),
                                       conv(channels, channels, 3)]
        else:
            layers = [conv(channels, channels, 3), ChannelNorm(channels), nn.ReLU(inplace=True),
                      conv(channels, channels, 3), ChannelNorm(channels)]
        self.body = nn.Sequential(*layers)

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

    def __init__(self, c_in: int, c_out: int, k: int = 3):
        super().__init__()
        self.conv = conv(c_in, c_out * 4, k)
        icnr_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def upscale(c_in: int, c_out: int, kind: str, k: int = 3) -> nn.Module:
    """A 2x upscale. `deconv`: k x k stride-2 transposed conv (HiFiC uses k=3, bmshj2018 k=5; a kernel
    not divisible by the stride can imprint checkerboards, Odena et al. 2016). `subpixel`: conv +
    PixelShuffle with ICNR. `resize`: nearest-neighbour resize then conv (Odena's fix)."""
    if kind == "deconv":
        return nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=(k - 1) // 2, output_padding=k % 2)
    if kind == "subpixel":
        return SubpixelUp(c_in, c_out, k)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, k))


def up_block(c_in: int, c_out: int, kind: str, k: int = 3, norm: str = "channelnorm",
             last: bool = False) -> nn.Sequential:
    """Doubles the resolution, then normalises (IGDN or ChannelNorm + ReLU); the `last` block, which
    makes RGB when there is no output conv, stays linear."""
    return nn.Sequential(upscale(c_in, c_out, kind, k), *([] if last else norm_layers(c_out, norm, inverse=True)))
