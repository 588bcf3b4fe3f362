"""Variable rate through learned quantisation gains (Cui et al. 2021, "gain units"; the quantisation
step scaling of Kamisli et al. 2024 in CompressAI's models/vbr.py).

Each trained rate level has a per-channel gain vector g. The codec codes round(g * y - g * mu) under
N(g * mu, g * sigma) and the generator reads y_hat = (symbols + g * mu) / g, so a larger gain is a
finer quantisation step (more bits, less distortion). A quality between two levels interpolates their
log-gains, which gives a continuous knob between the trained end points.

Quality is on a 0-100 scale, 0 the lowest rate level and 100 the highest, like JPEG's and WebP's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from texpress.errors import ConfigError

QUALITY_MAX = 100.0
QUALITY_STEP = 0.01  # the header stores quality in hundredths
DEFAULT_QUALITY = 50.0  # a variable-rate model codes at this quality unless told otherwise


def check_quality(quality: float) -> float:
    """A quality in [0, 100], rounded to the header's step; anything else is a ConfigError."""
    try:
        q = float(quality)
    except (TypeError, ValueError):
        raise ConfigError(f"quality must be a number from 0 to 100, got {quality!r}") from None
    if not math.isfinite(q) or not 0.0 <= q <= QUALITY_MAX:
        raise ConfigError(f"quality must be from 0 to 100, got {quality!r}")
    return round(q / QUALITY_STEP) * QUALITY_STEP


def quality_to_position(quality: torch.Tensor | float, levels: int) -> torch.Tensor:
    """Quality 0-100 to a continuous level index in [0, levels - 1]; level 0 is the lowest rate."""
    q = torch.as_tensor(quality, dtype=torch.float64)
    return q / QUALITY_MAX * (levels - 1)


def initial_log_gains(lambdas: tuple[float, ...], reference: float) -> torch.Tensor:
    """Log-gains that start each level near its rate weight: at high rate the distortion of a step
    Delta grows as Delta^2 and the best step as sqrt(lambda), so g = sqrt(reference / lambda)."""
    return torch.tensor([0.5 * math.log(reference / lam) for lam in lambdas], dtype=torch.float32)


class RateGains(nn.Module):
    """Per-channel log-gains of the rate levels (level 0: highest rate weight, lowest rate)."""

    def __init__(self, lambdas: tuple[float, ...], channels: int, reference: float | None = None):
        super().__init__()
        self.register_buffer("lambdas", torch.tensor(lambdas, dtype=torch.float64), persistent=False)
        ref = reference if reference is not None else math.exp(sum(map(math.log, lambdas)) / len(lambdas))
        start = initial_log_gains(lambdas, ref)  # highest lambda first: level 0 has the smallest gain
        self.log_gain = nn.Parameter(start[:, None].repeat(1, channels).contiguous())

    @property
    def levels(self) -> int:
        return self.log_gain.shape[0]

    def _interpolate(self, table: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        position = position.to(table.dtype).clamp(0, self.levels - 1)
        lo = position.floor().clamp(max=self.levels - 2).long()
        frac = (position - lo.to(position.dtype)).unsqueeze(-1)
        return table[lo] * (1 - frac) + table[lo + 1] * frac

    def gain(self, position: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(N,) level positions to (N, C, 1, 1) gains (in `dtype`, default the parameters')."""
        table = self.log_gain if dtype is None else self.log_gain.to(dtype)
        return self._interpolate(table, position.reshape(-1)).exp()[:, :, None, None]

    def rate_weight(self, position: torch.Tensor) -> torch.Tensor:
        """The rate weight lambda at each position, log-interpolated like the gains."""
        return self._interpolate(self.lambdas.log()[:, None], position.reshape(-1))[:, 0].exp()

    def sample_positions(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Training: level positions drawn uniformly over the whole range, so every quality between
        the trained levels is trained too."""
        return torch.rand(n, device=device, dtype=torch.float64) * (self.levels - 1)
