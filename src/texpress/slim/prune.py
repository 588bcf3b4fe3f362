"""Structured channel pruning of a trained codec with torch-pruning's DependencyGraph.

The generator (its trunk and upscale blocks) and, on request, the encoder are pruned channel-wise:
every dependency group (a conv's outputs, the GDN/IGDN or ChannelNorm after it, the next conv's
inputs, and the residual adds that tie a trunk together) loses the same `ratio` of its channels, the
least important by the L2 magnitude of their weights or by a first-order Taylor estimate of the
loss change (|w * dL/dw| on a few photos). The normalisation layers need the custom pruners of
slim.pruners. The channels that carry the latent y (the encoder's last conv, the generator's head
input) and RGB are never pruned, so the latent and the bitstream format stay as they are.

The result is a plain ModelConfig with narrower widths plus weights, built as a fresh TexpressModel
that loads the pruned tensors by name: it saves, loads, ships and codes like any preset.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from texpress.codec.config import ModelConfig
from texpress.codec.layers import SubpixelUp
from texpress.codec.model import Generator, TexpressModel
from texpress.errors import ConfigError
from texpress.slim.pruners import CUSTOM_PRUNERS

PARTS = ("generator", "encoder", "all")
CRITERIA = ("magnitude", "taylor")
MAX_RATIO = 0.95


def check_ratio(ratio: float) -> float:
    """A pruning ratio: the fraction of each group's channels to remove, in (0, MAX_RATIO]."""
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"--ratio must be a number between 0 and {MAX_RATIO}, got {ratio!r}") from None
    if not math.isfinite(r) or not 0.0 < r <= MAX_RATIO:
        raise ConfigError(f"--ratio must be above 0 and at most {MAX_RATIO} (the fraction of channels removed), "
                          f"got {ratio}")
    return r


def check_part(part: str) -> str:
    if part not in PARTS:
        raise ConfigError(f"--part must be one of {', '.join(PARTS)}, got {part!r}")
    return part


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ConfigError(f"--criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    return criterion


def _upscale_out(module: nn.Module) -> int:
    if isinstance(module, SubpixelUp):
        return module.conv.out_channels // 4
    if isinstance(module, nn.Sequential):  # resize: Upsample, conv
        return module[-1].out_channels
    return module.out_channels


def config_of(model: TexpressModel) -> ModelConfig:
    """The ModelConfig that describes `model`'s actual layer widths (after pruning)."""
    cfg = model.config
    net = model.encoder.net
    stages = [m for m in net if isinstance(m, nn.Sequential)]  # the four down blocks
    stem = net[0].out_channels if cfg.stem_kernel else 3
    enc = (stem, *(s[0].out_channels for s in stages))
    gen = model.generator
    widths = (gen.head[0].out_channels, *(_upscale_out(block[0]) for block in gen.ups))
    return cfg.replace(enc_widths=enc, gen_widths=widths)


def _prune(module: nn.Module, example: torch.Tensor, keep: list[nn.Module], ratio: float, importance,
           loss_fn=None) -> None:
    """Prune `module` in place: every group loses `ratio` of its channels, except those of `keep`."""
    with torch.enable_grad():
        pruner = tp.pruner.BasePruner(
            module, example, importance=importance, pruning_ratio=ratio, ignored_layers=keep,
            customized_pruners=CUSTOM_PRUNERS, root_module_types=[nn.Conv2d, nn.ConvTranspose2d],
        )
        if loss_fn is not None:
            module.zero_grad(set_to_none=True)
            loss_fn().backward()
        pruner.step()
    module.zero_grad(set_to_none=True)


def _taylor_loss(model: TexpressModel, images: torch.Tensor):
    """The distortion of the model's reconstruction of `images` (at mid quality for a variable-rate model)."""
    def loss() -> torch.Tensor:
        quality = torch.full((images.shape[0],), 50.0) if model.config.variable_rate else None
        return F.mse_loss(model(images, quality)["x_hat"], images)
    return loss


@dataclass(frozen=True)
class Pruned:
    model: TexpressModel
    part: str
    ratio: float
    criterion: str

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def prune_model(teacher: TexpressModel, ratio: float, part: str = "generator", criterion: str = "magnitude",
                images: torch.Tensor | None = None) -> Pruned:
    """A pruned copy of `teacher` (left as it is). `images` (N, 3, H, W) in [0, 1], H and W multiples
    of 64, are what the Taylor criterion measures the loss on."""
    ratio, part, criterion = check_ratio(ratio), check_part(part), check_criterion(criterion)
    cfg = teacher.config
    if cfg.upscale == "subpixel" and part in ("generator", "all"):
        raise ConfigError("pruning a generator with subpixel upscales is not supported (PixelShuffle groups "
                          "channels in fours); prune a deconv or resize model")
    if cfg.synthesis != "upscale" and part in ("generator", "all"):
        raise ConfigError(f"pruning a {cfg.synthesis} synthesis is not supported; prune an upscale generator")
    if criterion == "taylor" and images is None:
        raise ConfigError("the taylor criterion needs photos to measure the loss on (--images)")
    model = copy.deepcopy(teacher).cpu()
    model.train()
    if criterion == "taylor":
        importance = tp.importance.TaylorImportance()
        loss_fn = _taylor_loss(model, images)
    else:
        importance = tp.importance.MagnitudeImportance(p=2)
        loss_fn = None
    if part in ("generator", "all"):
        gen: Generator = model.generator
        keep = [gen.rgb_conv]  # RGB out; the head's inputs are y, which no group reaches
        y = torch.randn(1, cfg.latent_channels, 4, 4)
        _prune(gen, y, keep, ratio, importance, loss_fn)
    if part in ("encoder", "all"):
        last = model.encoder.net[-1]  # the conv to y: its outputs are the latent
        stem = [] if cfg.stem_kernel else []
        x = torch.rand(1, 3, 64, 64)
        _prune(model.encoder, x, [last, *stem], ratio, importance, loss_fn)
    slim_cfg = config_of(model)
    student = TexpressModel(slim_cfg)
    student.load_state_dict(model.state_dict())
    return Pruned(student.eval(), part, ratio, criterion)
