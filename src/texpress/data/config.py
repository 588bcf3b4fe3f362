"""Configuration of the data pipeline: one frozen dataclass per params.yaml section.

    prepare -> PrepareConfig   what `dvc repro`'s prepare stage gathers into data/raw
    shard   -> ShardConfig     validation limits, split fractions, shard bounds
    loader  -> LoaderConfig    the WebDataset training loader

`from_dict` refuses unknown keys, so a typo in params.yaml is an error, not a silent default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from texpress.errors import ConfigError
from texpress.params import build_section

DEFAULT_MAX_PIXELS = 100_000_000

T = TypeVar("T", bound="_Section")


class _Section:
    """Shared helpers: dict round trip with a check for unknown keys."""

    section: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any] | None) -> T:
        return build_section(cls, d, cls.section)

    def replace(self: T, **changes: Any) -> T:
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class PrepareConfig(_Section):
    """The `prepare` stage: which sources to gather into data/raw.

    sources: "samples" (the photos shipped inside scikit-image and scikit-learn), local folders or
    archives, or fsspec URLs (s3://bucket/prefix, file://...). endpoint_url: S3-compatible endpoint
    for s3:// sources (else TEXPRESS_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL / the AWS default).
    """

    section = "prepare"
    sources: tuple[str, ...] = ("samples",)
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        sources = (self.sources,) if isinstance(self.sources, str) else tuple(str(s) for s in self.sources)
        object.__setattr__(self, "sources", sources)
        if not sources:
            raise ConfigError("prepare.sources needs at least one source")


@dataclass(frozen=True)
class ShardConfig(_Section):
    """The `shard` stage and `texpress data ingest`: validation, split and shard bounds.

    min_side: images whose shorter side is below this are rejected.
    max_pixels: images above this many pixels are rejected before they are decoded.
    max_file_bytes: encoded files (or archive entries) above this size are rejected unread.
    val_frac, test_frac: fractions of the content-hash space that go to val and test.
    max_samples, max_bytes: a shard is closed before it would exceed either bound.
    workers: processes that decode and validate (1 = in this process); does not change the output.
    """

    section = "shard"
    min_side: int = 256
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 256 * 1024 * 1024
    val_frac: float = 0.1
    test_frac: float = 0.1
    max_samples: int = 1000
    max_bytes: int = 256 * 1024 * 1024
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("min_side", "max_pixels", "max_file_bytes", "max_samples", "max_bytes", "workers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"shard.{name} must be at least 1, got {getattr(self, name)!r}")
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("val_frac", "test_frac"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"shard.{name} must be between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        if self.val_frac + self.test_frac > 1.0:
            raise ConfigError("shard.val_frac + shard.test_frac must not exceed 1")

    def output_dict(self) -> dict[str, Any]:
        """The settings that determine the output (workers does not), recorded in the manifest."""
        d = self.to_dict()
        d.pop("workers")
        return d


@dataclass(frozen=True)
class LoaderConfig(_Section):
    """The training loader (`loader` section); read by the train stage.

    patch_size: side of the random square crops. Images with a shorter side below it are skipped
    (ingest with shard.min_side >= patch_size so that none are). batches_per_epoch: every DDP rank
    gets exactly this many batches per epoch. val_max_side: validation images are centre-cropped
    to at most this side (null: full images).
    """

    section = "loader"
    patch_size: int = 256
    batch_size: int = 8
    num_workers: int = 2
    shuffle_buffer: int = 256
    batches_per_epoch: int = 100
    seed: int = 0
    val_max_side: int | None = None

    def __post_init__(self) -> None:
        for name in ("patch_size", "batch_size", "shuffle_buffer", "batches_per_epoch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"loader.{name} must be at least 1, got {getattr(self, name)!r}")
        if self.num_workers < 0:
            raise ConfigError(f"loader.num_workers must be >= 0, got {self.num_workers}")
        if self.val_max_side is not None and self.val_max_side < 1:
            raise ConfigError(f"loader.val_max_side must be at least 1 or null, got {self.val_max_side}")
