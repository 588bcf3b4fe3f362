"""The HiFiC-style codec: encoder E, generator G, mean-scale hyperprior, on CompressAI's entropy models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import nn

from texpress.codec import passes
from texpress.codec.channel_context import ChannelGroupsContext
from texpress.codec.config import ModelConfig
from texpress.codec.context import CheckerboardContext
from texpress.codec.gain import DEFAULT_QUALITY, RateGains, quality_to_position
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
        if cfg.synthesis == "two-layer":  # conv + PixelShuffle(4) + normalisation, conv + PixelShuffle(4)
            self.head = nn.Sequential(conv(cfg.latent_channels, w[0] * 16, 3), nn.PixelShuffle(4),
                                      *norm_layers(w[0], cfg.norm, inverse=True))
            self.blocks = nn.Sequential()
            self.ups = nn.Sequential(nn.Sequential(conv(w[0], 3 * 16, cfg.up_kernel), nn.PixelShuffle(4)))
            self.tail = nn.Identity()
            return
        head_norm = [ChannelNorm(w[0])] if cfg.norm == "channelnorm" else []
        self.head = nn.Sequential(conv(cfg.latent_channels, w[0], 3), *head_norm)
        self.blocks = nn.Sequential(*[ResidualBlock(w[0], cfg.norm) for _ in range(cfg.res_blocks)])
        self.ups = nn.Sequential(*[up_block(w[i], w[i + 1], *cfg.upscale_of(i), cfg.norm,
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
    """Encoder, generator and mean-scale hyperprior in one CompressionModel; optionally a context model
    (the checkerboard, codec.context, or ELIC's channel groups, codec.channel_context) and the rate
    gains of a variable-rate model (codec.gain).

    The generator sees hard-quantized latents round(y - mu) + mu (straight-through gradient in
    training), so what it learns to decode is exactly what the bitstream carries; with
    `train_quant: noise` it reads y plus uniform noise in training instead. A variable-rate model
    codes g * y with a per-channel gain g of the quality (y_hat = (round(g y - g mu) + g mu) / g).
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
        if cfg.entropy == "checkerboard":
            self.context = CheckerboardContext(cfg.latent_channels, cfg.context_width)
        elif cfg.entropy == "channel-groups":
            self.context = ChannelGroupsContext(cfg.groups)
        if cfg.variable_rate:
            self.gains = RateGains(cfg.rate_lambdas, cfg.latent_channels)

    @property
    def has_context(self) -> bool:
        """A context model (checkerboard or channel groups): y is coded in more than one pass."""
        return self.config.entropy != "hyperprior"

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Refresh the entropy coder's CDF tables (after training, before coding)."""
        if scale_table is None:
            scale_table = get_scale_table(levels=SCALE_TABLE_LEVELS)
        return super().update(scale_table, force=force, update_quantiles=update_quantiles)

    # ---- the parameters of y. Outside training they are computed in float64 and snapped to a 2^-10
    # grid: the decoder must reproduce them bit for bit (they pick the entropy coder's tables and offset
    # every latent), and float32 convs drift in the last bits with the thread count.

    def _exact(self, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            return module(*inputs)
        weights = {k: v.double() for k, v in module.state_dict().items()}
        return torch.func.functional_call(module, weights, tuple(t.double() for t in inputs))

    def side_params(self, z_hat: torch.Tensor) -> torch.Tensor:
        """The hyperprior's (scales, means) of y, ungained (float64 outside training)."""
        return self._exact(self.h_s, z_hat)

    def context_params(self, y_hat_anchors: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """A checkerboard model's non-anchor (scales, means) from the decoded anchors (float64 outside
        training, at the non-anchors only: codec.context)."""
        return self.context(y_hat_anchors, side) if self.training else self.context.exact(y_hat_anchors, side)

    def rate_position(self, quality: torch.Tensor | float | None, n: int = 1) -> torch.Tensor | None:
        """(N,) float64 level positions of a variable-rate model (None for a single-rate one): those of
        `quality` (0-100), or with None DEFAULT_QUALITY outside training and a random one per sample in
        training."""
        if not self.config.variable_rate:
            return None
        if quality is None and self.training:
            return self.gains.sample_positions(n, self.gains.log_gain.device)
        quality = DEFAULT_QUALITY if quality is None else quality
        return quality_to_position(quality, self.gains.levels).reshape(-1).expand(n)

    def gain(self, position: torch.Tensor | None) -> torch.Tensor | None:
        """(N, C, 1, 1) gains at level positions (float64 outside training); None for a single rate."""
        if position is None:
            return None
        return self.gains.gain(position, None if self.training else torch.float64)

    def coding_params(self, params: torch.Tensor, gain: torch.Tensor | None,
                      snap: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of g * y: scaled by the gain, and with `snap` (default: outside training)
        snapped to the grid. Encode effort's search (codec.refine) keeps them unsnapped, differentiable."""
        scales, means = params.chunk(2, dim=1)
        if gain is not None:
            scales, means = scales * gain, means * gain
        if snap is None:
            snap = not self.training
        if snap:
            scales = scales.mul(PARAM_GRID).round_().div_(PARAM_GRID).float()
            means = means.mul(PARAM_GRID).round_().div_(PARAM_GRID).float()
        return scales, means

    def _y_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hyperprior's (scales, means) of y for a single-rate model without context."""
        return self.coding_params(self.side_params(z_hat), None)

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> dict:
        y = self.encoder(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        side = self.side_params(z_hat)
        position = self.rate_position(quality, x.shape[0])
        gain = self.gain(position)
        g = 1.0 if gain is None else gain.to(y.dtype)
        y_g = y * g
        scales, means, symbols = passes.code_y(  # the coding order, with rounding as the bitstream's
            self, side, gain, lambda s, m, mask, channels: quantize_ste(y_g[:, channels] - m), dtype=y.dtype)
        y_noisy, y_likelihoods = self.gaussian_conditional(y_g, scales, means=means)
        if self.training and self.config.train_quant == "noise":
            y_hat = y_noisy / g
        else:
            y_hat = (symbols + means) / g
        x_hat = self.generator(y_hat)
        out = {"x_hat": x_hat, "y": y, "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}
        if position is not None:
            out["rate_weight"] = self.gains.rate_weight(position).to(x.dtype)
        return out

    # ---- CompressAI's own coding (single-rate hyperprior models): tests and fuzzing compare with it

    def compress(self, x: torch.Tensor) -> dict:
        if self.has_context or self.config.variable_rate:
            raise NotImplementedError("CompressAI's coding covers single-rate hyperprior models; use codec.api.Codec")
        y = self.encoder(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self._y_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    def decompress(self, strings: list, shape: tuple[int, int]) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales, means = self._y_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means)
        return {"x_hat": self.generator(y_hat).clamp_(0, 1), "y_hat": y_hat}
