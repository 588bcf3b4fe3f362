"""Parameter and multiply-accumulate counts, measured from the modules with forward hooks on a real
forward pass (not from formulas), so pruned and custom configs are counted the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.layers import GDN
from torch import nn

from texpress.codec.model import TexpressModel


def count_macs(module: nn.Module, *x: torch.Tensor) -> int:
    """MACs of every Conv2d, ConvTranspose2d, Linear and GDN (a 1x1 conv over the squared input) in one
    forward pass of `module` on `x`."""
    total = 0

    def hook(mod: nn.Module, inputs, output) -> None:
        nonlocal total
        inp = inputs[0]
        if isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total += inp.numel() * (mod.out_channels // mod.groups) * k
        elif isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total += output.numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total += output.numel() * mod.in_features
        elif isinstance(mod, GDN):
            total += output.numel() * output.shape[1]

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, GDN))]
    try:
        with torch.inference_mode():
            module(*x)
    finally:
        for h in handles:
            h.remove()
    return total


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@dataclass(frozen=True)
class Complexity:
    """Per-pixel cost of each side. The encoder side includes h_s (it needs the scales to code y);
    the decoder side is h_s plus the generator."""

    encoder_params: int
    decoder_params: int
    generator_params: int
    encoder_kmac_per_px: float
    decoder_kmac_per_px: float
    generator_kmac_per_px: float
    residual_kmac_per_px: float
    context_kmac_per_px: float = 0.0  # the context model (codec.context, codec.channel_context), in both totals

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def measure(model: TexpressModel, size: int = 256) -> Complexity:
    model = model.eval()
    pixels = size * size
    x = torch.zeros(1, 3, size, size)
    with torch.inference_mode():
        y = model.encoder(x)
        z = model.h_a(y)
        trunk_in = model.generator.head(y)
    enc = count_macs(model.encoder, x) + count_macs(model.h_a, y)
    hs = count_macs(model.h_s, z)
    ctx = 0
    if model.has_context:
        side = torch.zeros(1, 2 * y.shape[1], *y.shape[-2:])
        ctx = count_macs(model.context, y, side)  # both context models: (y_hat, hyperprior parameters)
    gen = count_macs(model.generator, y)
    res = count_macs(model.generator.blocks, trunk_in) if len(model.generator.blocks) else 0
    entropy_params = n_params(model.entropy_bottleneck)
    extra = [m for m in (getattr(model, "context", None), getattr(model, "gains", None)) if m is not None]
    return Complexity(
        encoder_params=n_params(model.encoder, model.h_a, model.h_s, *extra) + entropy_params,
        decoder_params=n_params(model.generator, model.h_s, *extra) + entropy_params,
        generator_params=n_params(model.generator),
        encoder_kmac_per_px=(enc + hs + ctx) / pixels / 1e3,
        decoder_kmac_per_px=(hs + ctx + gen) / pixels / 1e3,
        generator_kmac_per_px=gen / pixels / 1e3,
        residual_kmac_per_px=res / pixels / 1e3,
        context_kmac_per_px=ctx / pixels / 1e3,
    )
