"""torch-pruning's custom pruners for the codec's normalisation layers.

torch-pruning prunes convolutions by itself but knows nothing of GDN/IGDN (Balle et al.) or HiFiC's
ChannelNorm, which hold per-channel tensors of their own:

- GDN/IGDN normalises channel i by sqrt(beta_i + sum_j gamma_ij x_j^2): beta is (C,), gamma (C, C),
  so removing channel k removes beta[k], row k and column k of gamma. It couples its channels with
  each other (like a 1x1 conv), but its input and output are the same channels, so it sits inside a
  dependency group like a BatchNorm: prune_in_channels is prune_out_channels.
- ChannelNorm has a (1, C, 1, 1) weight and bias.

Both are registered with the DependencyGraph through `customized_pruners` (CUSTOM_PRUNERS).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch_pruning as tp
from compressai.layers import GDN
from torch import nn

from texpress.codec.layers import ChannelNorm


def _keep(n: int, idxs: Sequence[int]) -> torch.Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)


class GDNPruner(tp.pruner.BasePruningFunc):
    """Removes channels from a GDN or IGDN: beta[k], and row and column k of gamma."""

    TARGET_MODULES = GDN

    def prune_out_channels(self, layer: GDN, idxs: Sequence[int]) -> GDN:
        keep = _keep(layer.beta.shape[0], idxs).to(layer.beta.device)
        layer.beta = nn.Parameter(layer.beta.data[keep].clone(), requires_grad=layer.beta.requires_grad)
        gamma = layer.gamma.data[keep][:, keep].clone()
        layer.gamma = nn.Parameter(gamma, requires_grad=layer.gamma.requires_grad)
        return layer

    prune_in_channels = prune_out_channels  # the same channels in and out: one group with its neighbours

    def get_out_channels(self, layer: GDN) -> int:
        return layer.beta.shape[0]

    get_in_channels = get_out_channels


class ChannelNormPruner(tp.pruner.BasePruningFunc):
    """Removes channels from HiFiC's ChannelNorm: its (1, C, 1, 1) weight and bias."""

    TARGET_MODULES = ChannelNorm

    def prune_out_channels(self, layer: ChannelNorm, idxs: Sequence[int]) -> ChannelNorm:
        keep = _keep(layer.weight.shape[1], idxs).to(layer.weight.device)
        layer.weight = nn.Parameter(layer.weight.data[:, keep].clone())
        layer.bias = nn.Parameter(layer.bias.data[:, keep].clone())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: ChannelNorm) -> int:
        return layer.weight.shape[1]

    get_in_channels = get_out_channels


CUSTOM_PRUNERS = {GDN: GDNPruner(), ChannelNorm: ChannelNormPruner()}
