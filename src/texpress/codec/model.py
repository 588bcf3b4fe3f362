"""The HiFiC-style codec: encoder E, generator G, mean-scale hyperprior, on CompressAI's entropy models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import nn

from texpress.codec.config import ModelConfig
from texpress.codec.layers import ChannelNorm, ResidualBlock, SubpixelUp, conv, down_block, norm_layers, up_block

DOWNSCALE = 16  # encoder stride
PAD_MULTIPLE = 64  # encoder (16) times hyper-analysis (4): inputs are padded to this
PARAM_GRID = 1024.0  # inference-time means and scales are multiples of 1/PARAM_GRID
# 256 log-spaced scales from 0.11 to 256 (neighbours 3 % apart): the coded size comes within ~1 % of
# the likelihoods' estimate; CompressAI's default 64 levels (13 % apart) cost about 5 % on y.
SCALE_TABLE_LEVELS = 256


def padding(size: int) -> int:
    """Rows or columns to add so that `size` becomes a multiple of PAD_MULTIPLE."""
    return (-size) % PAD_MULTIPLE


def pad_to_multiple(x: torch.Tensor) -> torch.Tensor:
    """Edge-replicate a (N, C, H, W) batch on the bottom and right up to multiples of PAD_MULTIPLE."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, padding(w), 0, padding(h)), mode="replicate") if (padding(h) or padding(w)) else x


class Encoder(nn.Module):
    """Optional stem conv, four stride-2 blocks (conv + normalisation), conv to the latent y."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.enc_widths
        layers: list[nn.Module] = []
        if cfg.stem_kernel:
            layers += [conv(3, w[0], cfg.stem_kernel), *norm_layers(w[0], cfg.norm)]
        layers += [down_block(w[i], w[i + 1], cfg.down_kernel, cfg.norm) for i in range(4)]
        layers.append(conv(w[4], cfg.latent_channels, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Generator(nn.Module):
    """Conv from y, residual blocks, four upscale blocks, conv to RGB (or the last upscale makes RGB)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.gen_widths
        head_norm = [ChannelNorm(w[0])] if cfg.norm == "channelnorm" else []
        self.head = nn.Sequential(conv(cfg.latent_channels, w[0], 3), *head_norm)
        self.blocks = nn.Sequential(*[ResidualBlock(w[0], cfg.norm) for _ in range(cfg.res_blocks)])
        self.ups = nn.Sequential(*[up_block(w[i], w[i + 1], cfg.upscale, cfg.up_kernel, cfg.norm,
                                            last=(i == 3 and not cfg.out_kernel)) for i in range(4)])
        self.tail = conv(w[4], 3, cfg.out_kernel) if cfg.out_kernel else nn.Identity()

    @property
    def rgb_conv(self) -> nn.Module:
        """The conv that outputs RGB: the tail, or the last upscale's conv when there is no tail."""
        if not isinstance(self.tail, nn.Identity):
            return self.tail
        up = self.ups[-1][0]
        if isinstance(up, SubpixelUp):
            return up.conv
        return up[-1] if isinstance(up, nn.Sequential) else up

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        h = self.head(y_hat)
        h = h + self.blocks(h)  # long skip over the trunk, as in HiFiC
        return self.tail(self.ups(h))


def hyper_analysis(c_y: int, n: int) -> nn.Sequential:
    return nn.Sequential(
        conv(c_y, n, 3), nn.LeakyReLU(inplace=True),
        conv(n, n, 5, stride=2), nn.LeakyReLU(inplace=True),
        conv(n, n, 5, stride=2),
    )


def hyper_synthesis(c_y: int, n: int) -> nn.Sequential:
    """Predicts the means and scales of y from z_hat (Minnen et al. 2018, mean-scale)."""
    mid = max(n, c_y * 3 // 2)
    return nn.Sequential(
        nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1), nn.LeakyReLU(inplace=True),
        nn.ConvTranspose2d(n, mid, 5, stride=2, padding=2, output_padding=1), nn.LeakyReLU(inplace=True),
        conv(mid, 2 * c_y, 3),
    )


class FastGaussianConditional(GaussianConditional):
    """CompressAI's GaussianConditional with a binary-search build_indexes: the same indexes as its
    loop over the table (one pass per scale level), in one pass, which matters with 256 levels."""

    def build_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        scales = self.lower_bound_scale(scales)
        # index = number of table entries below the scale (the last entry catches everything above)
        return torch.searchsorted(self.scale_table[:-1].to(scales.dtype), scales.contiguous(), right=False).int()


class TexpressModel(CompressionModel):
    """Encoder, generator and mean-scale hyperprior in one CompressionModel.

    The generator sees hard-quantized latents round(y - mu) + mu (straight-through gradient in
    training), so what it learns to decode is exactly what the bitstream carries; with
    `train_quant: noise` it reads y plus uniform noise in training instead.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.generator = Generator(cfg)
        self.h_a = hyper_analysis(cfg.latent_channels, cfg.hyper_channels)
        self.h_s = hyper_synthesis(cfg.latent_channels, cfg.hyper_channels)
        self.entropy_bottleneck = EntropyBottleneck(cfg.hyper_channels)
        self.gaussian_conditional = FastGaussianConditional(None)

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Refresh the entropy coder's CDF tables (after training, before coding)."""
        if scale_table is None:
            scale_table = get_scale_table(levels=SCALE_TABLE_LEVELS)
        return super().update(scale_table, force=force, update_quantiles=update_quantiles)

    def _y_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means of y. Outside training they are computed in float64 and snapped to a
        2^-10 grid: the decoder must reproduce them bit for bit (they pick the entropy coder's
        tables and offset every latent), and float32 transposed convs drift in the last bits with
        the thread count."""
        if self.training:
            params = self.h_s(z_hat)
        else:
            weights = {k: v.double() for k, v in self.h_s.state_dict().items()}
            params = torch.func.functional_call(self.h_s, weights, (z_hat.double(),))
            params = params.mul_(PARAM_GRID).round_().div_(PARAM_GRID).float()
        scales, means = params.chunk(2, dim=1)
        return scales, means

    def forward(self, x: torch.Tensor) -> dict:
        y = self.encoder(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self._y_params(z_hat)
        y_noisy, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        if self.training and self.config.train_quant == "noise":
            y_hat = y_noisy
        else:
            y_hat = quantize_ste(y - means) + means
        x_hat = self.generator(y_hat)
        return {"x_hat": x_hat, "y": y, "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: torch.Tensor) -> dict:
        y = self.encoder(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self._y_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    def decompress_latent(self, strings: list, shape: tuple[int, int]) -> torch.Tensor:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales, means = self._y_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        return self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means)

    def decompress(self, strings: list, shape: tuple[int, int]) -> dict:
        y_hat = self.decompress_latent(strings, shape)
        return {"x_hat": self.generator(y_hat).clamp_(0, 1), "y_hat": y_hat}
