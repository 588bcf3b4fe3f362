"""The arms an A/B run compares: CompressAI's reference models, texpress presets and any ModelConfig
given as a YAML file. Each arm builds a fresh, untrained CompressionModel with the same interface
(forward -> x_hat + likelihoods, compress, decompress)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from compressai.models import CompressionModel, MeanScaleHyperprior, ScaleHyperprior

from texpress.codec.complexity import count_macs, measure
from texpress.codec.config import PRESETS, ModelConfig
from texpress.codec.model import TexpressModel
from texpress.errors import ConfigError

# CompressAI's bmshj2018-hyperprior and mbt2018-mean at their high-rate width (quality 6-8 use
# N=192, M=320; qualities 1-5 use N=128, M=192, the size our base preset is compared with).
REFERENCES: dict[str, Callable[[], CompressionModel]] = {
    "bmshj2018-hyperprior": lambda: ScaleHyperprior(N=128, M=192),
    "mbt2018-mean": lambda: MeanScaleHyperprior(N=128, M=192),
}
DEFAULT_ARMS = ("bmshj2018-hyperprior", "mbt2018-mean", "base", "lite")


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # "reference", "preset" or "config"
    config: dict[str, Any] | None = field(default=None, compare=False)

    def build(self) -> CompressionModel:
        if self.kind == "reference":
            return REFERENCES[self.name]()
        return TexpressModel(ModelConfig.from_dict(self.config or {}))


def arm_from_name(name: str) -> Arm:
    """A reference model or a preset, by name."""
    if name in REFERENCES:
        return Arm(name, "reference")
    if name in PRESETS:
        return Arm(name, "preset", PRESETS[name].to_dict())
    raise ConfigError(f"unknown arm {name!r}; choose from {', '.join([*REFERENCES, *PRESETS])} "
                      "or give a ModelConfig YAML with --config")


def arm_from_yaml(spec: str) -> Arm:
    """`NAME=PATH` or `PATH` (named after the file): a YAML mapping of ModelConfig fields, optionally
    `preset: NAME` to start from a preset and override some of its fields."""
    import yaml

    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = Path(path)
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read the config ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{p}: a config must be a mapping of ModelConfig fields")
    preset = values.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"{p}: unknown preset {preset!r}")
    base = PRESETS[preset].to_dict() if preset else {}
    config = ModelConfig.from_dict({**base, **values}).to_dict()  # validates now, one-line errors
    return Arm(name or p.stem, "config", config)


def decoder_kmac_per_px(model: CompressionModel, size: int = 256) -> float:
    """Decoder cost per pixel, counted by the same forward hooks for every arm: hyper-synthesis plus
    synthesis transform (texpress: h_s + generator; CompressAI: h_s + g_s)."""
    if isinstance(model, TexpressModel):
        return measure(model, size).decoder_kmac_per_px
    model = model.eval()
    with torch.inference_mode():
        y = model.g_a(torch.zeros(1, 3, size, size))
        z = model.h_a(y)
    return (count_macs(model.h_s, z) + count_macs(model.g_s, y)) / (size * size) / 1e3


def n_params(model: CompressionModel) -> int:
    return sum(p.numel() for p in model.parameters())
