"""HiFiC's conditional discriminator D(x, y): judges an image given the latent it was decoded from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from texpress.codec.model import DOWNSCALE


class ConditionalDiscriminator(nn.Module):
    """y -> 12 channels, nearest-upsampled to the image size and concatenated with it; then 4x4
    stride-2 convs (64, 128, 256), a 4x4 conv to 512 and a 1-channel patch map of logits.
    Spectral norm on every conv, LeakyReLU 0.2."""

    def __init__(self, latent_channels: int, cond_channels: int = 12, widths=(64, 128, 256, 512)):
        super().__init__()
        self.cond = nn.Sequential(
            spectral_norm(nn.Conv2d(latent_channels, cond_channels, 3, padding=1)), nn.LeakyReLU(0.2, inplace=True)
        )
        layers: list[nn.Module] = []
        c = 3 + cond_channels
        for w in widths[:-1]:
            layers += [spectral_norm(nn.Conv2d(c, w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        layers += [nn.ZeroPad2d((1, 2, 1, 2)),  # "same" size for an even kernel, without torch's padded copy
                   spectral_norm(nn.Conv2d(c, widths[-1], 4, stride=1)), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(spectral_norm(nn.Conv2d(widths[-1], 1, 1)))
        self.net = nn.Sequential(*layers)

    def _input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = F.interpolate(self.cond(y), scale_factor=DOWNSCALE, mode="nearest")
        return torch.cat([x, c], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Patch logits, one per 8x8 region of x. y is detached by the caller when D must not train E."""
        return self.net(self._input(x, y))

    def features(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The activation after each LeakyReLU, then the logits: what feature matching compares
        (pix2pixHD, Wang et al. 2018)."""
        h = self._input(x, y)
        feats = []
        for layer in self.net:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(h)
        feats.append(h)
        return feats
