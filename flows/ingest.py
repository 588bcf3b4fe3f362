"""Flow `ingest`: shard newly arrived images into the DVC-tracked dataset.

The sources go into params.yaml (prepare.sources), `dvc repro prepare shard` gathers them into
data/raw and writes data/shards, and `dvc push` sends the new data version to the DVC remote.
DVC skips both stages when nothing changed, so a re-run over the same images costs seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.common import TRANSIENT_RETRIES, EndpointUrl, Text, dvc, report, repo_root, set_params


class IngestParams(BaseModel):
    """What to ingest; unset fields keep the values in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    sources: list[Text] = Field(["samples"], min_length=1, description=(
        "Folders, .tar/.tar.gz/.zip archives, s3:// prefixes, or `samples` (the photos inside scikit-image "
        "and scikit-learn)."))
    endpoint_url: EndpointUrl | None = Field(None, description="S3-compatible endpoint for s3:// sources.")
    min_side: int | None = Field(None, ge=1, description="Reject images with a shorter side (default: params.yaml).")
    val_frac: float | None = Field(None, ge=0, le=1, description="Fraction of images for validation.")
    test_frac: float | None = Field(None, ge=0, le=1, description="Fraction of images for the test split.")
    push: bool = Field(True, description="`dvc push` the new data version when a DVC remote is configured.")

    @model_validator(mode="after")
    def _splits_leave_training_images(self) -> "IngestParams":
        if (self.val_frac or 0) + (self.test_frac or 0) >= 1:
            raise ValueError("val_frac + test_frac must be below 1 (the rest is the training split)")
        return self

    def param_changes(self) -> dict[str, Any]:
        """The params.yaml keys this run sets (the sources always: they say what to ingest)."""
        changes = {"shard.min_side": self.min_side, "shard.val_frac": self.val_frac, "shard.test_frac": self.test_frac}
        return {"prepare.sources": self.sources, "prepare.endpoint_url": self.endpoint_url,
                **{k: v for k, v in changes.items() if v is not None}}


@task(**TRANSIENT_RETRIES)
def check_source(source: str, endpoint_url: str | None, base: Path | None = None) -> None:
    """Fail early, with retries, when a source cannot be reached (an object store or a mount may be down),
    before params.yaml changes. Relative paths are inside the checkout, as the prepare stage reads them."""
    from texpress.data import storage
    from texpress.errors import InputError

    if source == "samples":
        return
    if storage.is_local(source):
        found = ((base or Path.cwd()) / storage.local_path(source)).exists()
    else:
        fs, path = storage.url_to_fs(source, endpoint_url)
        found = fs.exists(path)
    if not found:
        raise InputError(f"{source}: source not found or not reachable")


@task
def repro_shard(repo: Path) -> dict[str, Any]:
    """`dvc repro prepare shard`; the new dataset's statistics."""
    from texpress.data.manifest import stats

    dvc("repro", "prepare", "shard", cwd=repo)
    return stats(repo / "data" / "shards")


@task(**TRANSIENT_RETRIES)
def push(repo: Path) -> bool:
    """`dvc push` of the raw images and the shards, when a default remote is configured."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        remote = dvc_repo.config["core"].get("remote")
    if not remote:
        get_run_logger().info("no default DVC remote: the data version stays in the local cache")
        return False
    dvc("push", "prepare", "shard", cwd=repo)
    return True


@flow(name="ingest", log_prints=True)
def ingest(params: IngestParams = IngestParams()) -> dict[str, Any]:
    """Shard newly arrived images from folders, archives or s3:// prefixes into the DVC-tracked dataset."""
    repo = repo_root()
    for source in params.sources:
        check_source(source, params.endpoint_url, repo)
    set_params(repo, params.param_changes())
    stats = repro_shard(repo)
    pushed = push(repo) if params.push else False
    metrics = {"data version": stats["dataset_version"], "images seen": stats["seen"],
               "accepted": stats["accepted"], "rejected": stats["rejected"], "duplicates": stats["duplicates"],
               **{f"{split} images": n for split, n in stats["splits"].items()},
               "shards": sum(stats["shards"].values()),
               "pushed to the DVC remote": pushed}
    report("ingest", f"Ingest of {', '.join(params.sources)}", metrics)
    return {**stats, "pushed": pushed}
