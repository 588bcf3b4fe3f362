"""The `slim:` section of params.yaml: the DVC slim stage's prune-and-distill of the pipeline's model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from texpress.errors import ConfigError
from texpress.params import build_section
from texpress.slim.prune import check_criterion, check_part, check_ratio


@dataclass(frozen=True)
class SlimConfig:
    """ratio, part, criterion: the structured pruning (texpress slim prune). config_changes: ModelConfig
    changes after pruning, e.g. `up_kernel=3` (null: none). steps, lr: the distillation against the
    trained model (the trainer's other settings come from the train: and loader: sections).
    distill_weight, feature_weight: the distillation terms (train.distill_weight, train.distill_feature).
    register_suffix: the slim variant is registered as the teacher's registered name plus this."""

    ratio: float = 0.25
    part: str = "generator"
    criterion: str = "magnitude"
    config_changes: str | None = None
    steps: int = 100
    lr: float = 1e-3
    distill_weight: float = 1.0
    feature_weight: float = 0.0
    register_suffix: str = "-slim"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", check_ratio(self.ratio))
        check_part(self.part)
        check_criterion(self.criterion)
        if self.criterion == "taylor":
            raise ConfigError("slim.criterion: the stage prunes by magnitude (taylor needs photos: texpress slim prune)")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"slim.steps must be a positive integer, got {self.steps!r}")
        for name in ("lr", "distill_weight", "feature_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"slim.{name} must be a non-negative number, got {value!r}")
        if self.lr <= 0:
            raise ConfigError("slim.lr must be positive")
        if not self.register_suffix:
            raise ConfigError("slim.register_suffix must not be empty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SlimConfig":
        return build_section(cls, d, "slim")

    def replace(self, **changes: Any) -> "SlimConfig":
        return replace(self, **changes)
