"""Evaluation settings: `EvalConfig` is the `evaluate:` section of params.yaml, one field per key.

TextureConfig (its `texture:` sub-section) holds the parameters of the texture metrics and
FigureConfig (`figure:`) those of the side-by-side crops figure."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from texpress.errors import ConfigError
from texpress.evaluate.baselines import BASELINES
from texpress.params import build_section


@dataclass(frozen=True)
class TextureConfig:
    """Parameters of the texture metrics (formulas in docs/metrics.md).

    periods: the periods in pixels that upscale layers can imprint; the checkerboard score looks at
        every frequency that is a multiple of 1/lcm(periods) on each axis.
    patch: side of the square patches over which texture statistics are compared.
    scales: Gaussian scales (pixels) of the derivative filter bank.
    floor: noise floor in squared 8-bit levels: patches with less filter energy than this count as flat.
    hf_band: lower edge of the "top frequency band" in cycles per pixel (0.25 = the top octave).
    """

    periods: tuple[int, ...] = (2, 4, 8, 16)
    patch: int = 32
    scales: tuple[float, ...] = (0.7, 1.4, 2.8)
    floor: float = 0.25
    hf_band: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "periods", tuple(int(p) for p in self.periods))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.periods or any(p < 2 for p in self.periods):
            raise ConfigError("texture.periods must be integers >= 2")
        if self.patch < 4:
            raise ConfigError("texture.patch must be at least 4 pixels")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError("texture.scales must be positive")
        if not 0.0 < self.hf_band < 0.5:
            raise ConfigError("texture.hf_band must be between 0 and 0.5 cycles per pixel")
        if self.floor <= 0:
            raise ConfigError("texture.floor must be positive")


@dataclass(frozen=True)
class FigureConfig:
    """The side-by-side crops figure.

    image: name (file stem) or 0-based index of the image to show; the first image when None.
    crop: side of the square crop in pixels; centred on the most textured region of the image.
    bpp: the rate to compare at; the middle point of the first model curve when None (0.5 with no model).
    """

    image: str | int | None = None
    crop: int = 192
    bpp: float | None = None

    def __post_init__(self) -> None:
        if self.crop < 16:
            raise ConfigError("figure.crop must be at least 16 pixels")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which baselines at which qualities, on which part of each image.

    baselines: names from texpress.evaluate.baselines.BASELINES.
    qualities: per-baseline override of the quality sweep (each codec's own quality parameter).
    crop: [width, height] centre crop applied to every image before coding (None: whole images).
    max_images: evaluate only the first N images (None: all).
    mlflow: in the DVC stage, also log to the MLflow run named in the checkpoint (the training run)
        when the tracking store has it; MLFLOW_RUN_ID names a run explicitly.
    """

    baselines: tuple[str, ...] = ("jpeg", "webp", "avif", "jpeg2000", "heic", "jxl")
    qualities: dict[str, tuple[float, ...]] = field(default_factory=dict)
    crop: tuple[int, int] | None = None
    max_images: int | None = None
    mlflow: bool = True
    texture: TextureConfig = field(default_factory=TextureConfig)
    figure: FigureConfig = field(default_factory=FigureConfig)

    def __post_init__(self) -> None:
        if isinstance(self.baselines, str):
            object.__setattr__(self, "baselines", parse_baselines(self.baselines))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")
        if len(set(self.baselines)) != len(self.baselines):
            raise ConfigError("a baseline is listed twice")
        quals = {}
        for name, values in dict(self.qualities or {}).items():
            if name not in BASELINES:
                raise ConfigError(f"qualities given for unknown baseline {name!r}")
            values = tuple(float(v) for v in values)
            if not values:
                raise ConfigError(f"qualities for {name} are empty")
            quals[name] = values
        object.__setattr__(self, "qualities", quals)
        if self.crop is not None:
            crop = tuple(int(c) for c in self.crop)
            if len(crop) != 2 or min(crop) < 16:
                raise ConfigError("crop must be [width, height], each at least 16 pixels")
            object.__setattr__(self, "crop", crop)
        if self.max_images is not None and int(self.max_images) < 1:
            raise ConfigError("max_images must be at least 1")
        if isinstance(self.texture, dict):
            object.__setattr__(self, "texture", build_section(TextureConfig, self.texture, "evaluate.texture"))
        if isinstance(self.figure, dict):
            object.__setattr__(self, "figure", build_section(FigureConfig, self.figure, "evaluate.figure"))

    def qualities_for(self, baseline: str) -> tuple[float, ...]:
        return self.qualities.get(baseline, BASELINES[baseline].default_qualities)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["baselines"] = list(self.baselines)
        d["qualities"] = {k: list(v) for k, v in self.qualities.items()}
        d["crop"] = list(self.crop) if self.crop else None
        d["texture"]["periods"] = list(self.texture.periods)
        d["texture"]["scales"] = list(self.texture.scales)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "EvalConfig":
        return build_section(cls, d, "evaluate")


def parse_baselines(text: str) -> tuple[str, ...]:
    """'jpeg,webp' -> ('jpeg', 'webp'); 'none' or '' -> (); 'all' -> every baseline."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    if text == "all":
        return tuple(BASELINES)
    return tuple(t.strip() for t in text.split(",") if t.strip())


DEFAULT_MODEL_LABEL = "texpress"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass
class ModelSpec:
    """A checkpoint and the curve it belongs to (checkpoints sharing a label form one curve), coded at
    an encode effort (codec.refine)."""

    label: str
    path: Path
    effort: int = 0

    def at_effort(self, effort: int) -> "ModelSpec":
        """The same checkpoint at another effort, on its own curve (LABEL-eN) beside effort 0's."""
        return ModelSpec(f"{self.label}-e{effort}" if effort else self.label, self.path, effort)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """`CKPT` or `LABEL=CKPT`."""
        label, sep, path = text.partition("=")
        if sep and label and not os.path.exists(text):
            label = label.strip()
            if not _LABEL.fullmatch(label):  # it names files (curves/LABEL.json) and MLflow keys
                raise ConfigError(f"model label {label!r}: use letters, digits, '_', '-', '.' and '+' only")
            return cls(label, Path(path))
        return cls(DEFAULT_MODEL_LABEL, Path(text))
