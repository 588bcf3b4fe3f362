"""Registry settings: `RegistryConfig` is the `registry:` section of params.yaml, one field per key;
`GateConfig` (its `gate:` sub-section) holds the thresholds of the promotion gate (docs/registry.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from texpress.errors import ConfigError
from texpress.evaluate.baselines import BASELINES
from texpress.params import build_section
from texpress.registry.store import check_name


@dataclass(frozen=True)
class GateConfig:
    """When a candidate replaces the champion. Rates are in percent of the champion's bits.

    anchor, anchor_qualities: the classical codec (texpress.evaluate baseline) and its quality sweep,
        coded in the same run: single-checkpoint models are compared at equal quality through it,
        and it is the absolute floor when there is no champion yet.
    max_rate_delta: the candidate may need at most this many % more bits than the champion at equal
        PSNR and at equal MS-SSIM (BD-rate with 2+ points per curve, else the rate difference at
        equal quality); 0 = no worse, negative = must save bits.
    texture_tolerance, checkerboard_tolerance: absolute increase of the texture-statistics distance
        and of the checkerboard score allowed over the champion's.
    speed_tolerance: relative increase of decode ms per megapixel allowed (0.25 = 25 % slower),
        measured side by side, speed_repeats alternating decodes per image.
    floor_max_rate_delta: with no champion, % bits against the anchor at equal PSNR must be at most
        this (0: beats the anchor; null: no rate floor). floor_min_psnr: and PSNR at least this (dB).
    """

    anchor: str = "jpeg"
    anchor_qualities: tuple[float, ...] = (1, 3, 5, 12, 25, 45, 70, 90)
    max_rate_delta: float = 0.0
    texture_tolerance: float = 0.02
    checkerboard_tolerance: float = 0.02
    speed_tolerance: float = 0.25
    speed_repeats: int = 3
    floor_max_rate_delta: float | None = 0.0
    floor_min_psnr: float | None = None

    def __post_init__(self) -> None:
        if self.anchor not in BASELINES:
            raise ConfigError(f"registry.gate.anchor: unknown baseline {self.anchor!r}; choose from "
                              f"{', '.join(BASELINES)}")
        object.__setattr__(self, "anchor_qualities", tuple(float(q) for q in self.anchor_qualities))
        if len(self.anchor_qualities) < 2:
            raise ConfigError("registry.gate.anchor_qualities needs at least 2 qualities")
        for name in ("max_rate_delta", "texture_tolerance", "checkerboard_tolerance", "speed_tolerance",
                     "floor_max_rate_delta", "floor_min_psnr"):
            value = getattr(self, name)
            if value is None and name.startswith("floor_"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"registry.gate.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.texture_tolerance < 0 or self.checkerboard_tolerance < 0 or self.speed_tolerance <= -1:
            raise ConfigError("registry.gate tolerances must not be negative (speed_tolerance above -1)")
        if isinstance(self.speed_repeats, bool) or not isinstance(self.speed_repeats, int) or self.speed_repeats < 1:
            raise ConfigError(f"registry.gate.speed_repeats must be an integer >= 1, got {self.speed_repeats!r}")


@dataclass(frozen=True)
class RegistryConfig:
    """Where models are registered and how the gate's evaluation is run.

    name: registered model name; null: `texpress-<preset>` from the checkpoint.
    experiment: MLflow experiment of the registry's own runs (a model without a training run, and
        one run per promotion decision).
    register_on_train: the train stage registers its model as soon as it is trained.
    promote: the register stage runs the promotion gate after registering.
    images: the fixed evaluation set of the gate (image files, folders or .tar shards).
    crop: [width, height] centre crop before coding (null: whole images). max_images: first N only.
    seed: torch seed set before each side-by-side evaluation.
    lock_timeout_s: how long a promotion waits for another one on the same name to finish.
    """

    name: str | None = None
    experiment: str = "texpress-registry"
    register_on_train: bool = False
    promote: bool = True
    images: tuple[str, ...] = ("data/shards/test",)
    crop: tuple[int, int] | None = None
    max_images: int | None = None
    seed: int = 0
    lock_timeout_s: float = 1800.0
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if isinstance(self.images, str):
            object.__setattr__(self, "images", (self.images,))
        object.__setattr__(self, "images", tuple(str(i) for i in self.images))
        if not self.images:
            raise ConfigError("registry.images must name at least one image source")
        if self.crop is not None:
            crop = tuple(int(c) for c in self.crop)
            if len(crop) != 2 or min(crop) < 16:
                raise ConfigError("registry.crop must be [width, height], each at least 16 pixels")
            object.__setattr__(self, "crop", crop)
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise ConfigError("registry.max_images must be an integer >= 1")
        for name in ("register_on_train", "promote"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"registry.{name} must be true or false")
        if self.name is not None:

            check_name(self.name)
        if not self.experiment:
            raise ConfigError("registry.experiment must not be empty")
        if isinstance(self.gate, dict):
            object.__setattr__(self, "gate", build_section(GateConfig, self.gate, "registry.gate"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = list(self.images)
        d["crop"] = list(self.crop) if self.crop else None
        d["gate"]["anchor_qualities"] = list(self.gate.anchor_qualities)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RegistryConfig":
        return build_section(cls, d, "registry")
