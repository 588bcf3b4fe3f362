"""Settings of a bulk job: one frozen dataclass, built strictly like every params.yaml section."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from texpress.codec.gain import check_quality
from texpress.codec.refine import check_effort, check_lambda
from texpress.errors import ConfigError
from texpress.params import build_section

FILES = "files"
WEBDATASET = "webdataset"


@dataclass(frozen=True)
class BulkConfig:
    """workers: actors, each holding one loaded codec; cpus_per_worker also sets its torch threads;
    gpus_per_worker > 0 puts the codecs on GPUs. batch_size: images per actor call. files_per_task:
    loose files read by one read task. dest_format: "files" (one object per input) or "webdataset"
    (shards of shard_size .tpx records). source_format: "files" or "webdataset" (tar members grouped
    into samples by key). max_file_bytes / max_pixels: inputs above these are refused. effort: the
    encode effort of compress (codec.refine; 0 = the encoder alone), lam: the rate weight it refines
    against (null = the model's own). quality: a variable-rate model's quality, 0-100 (null = its
    default; a single-rate model refuses one)."""

    section = "bulk"
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 8
    files_per_task: int = 16
    shard_size: int = 256
    dest_format: str = FILES
    source_format: str = FILES
    max_file_bytes: int = 256 << 20
    max_pixels: int = 100_000_000
    endpoint_url: str | None = None
    effort: int = 0
    lam: float | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "files_per_task", "shard_size", "max_file_bytes", "max_pixels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"bulk.{name} must be at least 1, got {getattr(self, name)}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError("bulk.cpus_per_worker must be > 0 and bulk.gpus_per_worker >= 0")
        for name in ("dest_format", "source_format"):
            if getattr(self, name) not in (FILES, WEBDATASET):
                raise ConfigError(f"bulk.{name} must be {FILES!r} or {WEBDATASET!r}, got {getattr(self, name)!r}")
        object.__setattr__(self, "effort", check_effort(self.effort))
        object.__setattr__(self, "lam", check_lambda(self.lam))
        if self.quality is not None:
            object.__setattr__(self, "quality", check_quality(self.quality))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "BulkConfig":
        return build_section(cls, d, cls.section)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "BulkConfig":
        return replace(self, **changes)
