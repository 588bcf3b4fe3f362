"""Flows `bulk-compress` and `bulk-decompress`: a whole image store (folder, archive, WebDataset
shards, s3:// prefix) through texpress.bulk on Ray Data. Jobs are resumable: DEST's manifest makes
a retry or a re-run skip what is done, so a retried task loses no work."""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field

from flows.common import TRANSIENT_RETRIES, EndpointUrl, Text, check_local_path, model_name, report, repo_root


class BulkParams(BaseModel):
    """A bulk job; relative paths are inside the checkout. Unset fields keep the `bulk:` params."""

    model_config = ConfigDict(extra="forbid")
    sources: list[Text] = Field(["data/raw"], min_length=1,
                               description="Folders, archives, WebDataset shards or s3:// prefixes.")
    dest: Text = Field("reports/bulk/tpx", description="Destination folder, s3:// prefix (or shards with dest_format).")
    model: Text | None = Field(None, description="Checkpoint or models:/NAME@ALIAS (default: the registered "
                               "@champion).")
    workers: int | None = Field(None, ge=1, description="Ray actors, one loaded codec each.")
    gpus_per_worker: float | None = Field(None, ge=0, description="GPUs per actor (0: CPU).")
    batch_size: int | None = Field(None, ge=1, description="Images per actor call.")
    dest_format: Literal["files", "webdataset"] | None = Field(
        None, description="Compress: one .tpx per image, or shards.")
    endpoint_url: EndpointUrl | None = Field(None, description="S3-compatible endpoint for s3:// paths.")
    effort: int | None = Field(None, ge=0, le=3, description="Compress: encode effort, 0 (fastest) to 3 (slowest, "
                               "fewest bits); the decoder is the same (docs/effort.md).")
    lam: float | None = Field(None, gt=0, description="Compress: the rate weight efforts above 0 refine against "
                              "(default: the model's own).")
    quality: float | None = Field(None, ge=0, le=100, description="Compress: a variable-rate model's quality, 0 "
                                  "(fewest bits) to 100 (default: the model's, 50).")

    def config(self, repo):
        """texpress.bulk.config.BulkConfig: params.yaml's `bulk:` section with this run's overrides."""
        from texpress.bulk.config import BulkConfig
        from texpress.params import load_params

        fields = {"workers", "gpus_per_worker", "batch_size", "dest_format", "endpoint_url", "effort", "lam", "quality"}
        changes = {k: v for k, v in self.model_dump(include=fields).items() if v is not None}
        return BulkConfig.from_dict(load_params(repo / "params.yaml", "bulk")).replace(**changes)


class DecompressParams(BulkParams):
    """A bulk decompress job: by default, the store bulk-compress wrote, back to PNG."""

    sources: list[Text] = Field(["reports/bulk/tpx"], min_length=1,
                               description="Compressed stores (.tpx files or shards).")
    dest: Text = Field("reports/bulk/png", description="Destination folder or s3:// prefix for the PNGs.")


def progress_logger(logger, every_s: float = 10.0):
    """An on_progress callback for run_bulk: a progress line in the run's log every `every_s` seconds."""
    last = [time.monotonic()]

    def show(r) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            logger.info("%d coded, %d skipped, %d failed | %.1f images/s, %.2f MB/s", r.coded, r.skipped,
                        r.failed_now, r.images_per_s, r.mb_per_s)
    return show


def check_inputs(params: BulkParams) -> None:
    """Refuse a local source or checkpoint that does not exist before the retried job starts."""
    repo = repo_root()
    for source in params.sources:
        check_local_path(source, repo, "source")
    if params.model and not params.model.startswith("models:/"):
        check_local_path(params.model, repo, "model")


@task(**TRANSIENT_RETRIES)
def run_job(mode: str, params: BulkParams) -> dict[str, Any]:
    """One resumable bulk job; bad inputs are counted in the report, not raised."""
    from dataclasses import asdict

    from texpress.bulk.job import run_bulk

    repo = repo_root()
    model = params.model or f"models:/{model_name(repo)}@champion"
    if not model.startswith("models:/") and "://" not in model:  # a checkpoint path: in the checkout, like sources
        model = str(repo / model)
    sources = [s if "://" in s else str(repo / s) for s in params.sources]
    dest = params.dest if "://" in params.dest else str(repo / params.dest)
    logger = get_run_logger()
    logger.info("bulk %s %s -> %s with %s", mode, ", ".join(sources), dest, model)
    result = run_bulk(mode, sources, dest, model, params.config(repo), on_progress=progress_logger(logger))
    for error in result.errors[:20]:
        logger.warning("%s: %s: %s", error["key"], error["reason"], error["detail"])
    return asdict(result)


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    return {"model": r["model"], "inputs": r["inputs"], "done": r["done"], "failed": r["failed"],
            "coded this run": r["coded"], "skipped (done before)": r["skipped"], "bytes in": r["bytes_in"],
            "bytes out": r["bytes_out"], "mean bpp": r["mean_bpp"], "wall time (s)": r["wall_s"],
            "images/s": r["images_per_s"], "MB/s": r["mb_per_s"],
            **{f"errors: {reason}": n for reason, n in r["errors_by_reason"].items()}}


@flow(name="bulk-compress", log_prints=True)
def bulk_compress(params: BulkParams = BulkParams()) -> dict[str, Any]:
    """Compress an image store into .tpx files (or shards) with a checkpoint or a registered model."""
    check_inputs(params)
    result = run_job("compress", params)
    report("bulk-compress", f"bulk compress -> {result['dest']}", _summary(result))
    return result


@flow(name="bulk-decompress", log_prints=True)
def bulk_decompress(params: DecompressParams = DecompressParams()) -> dict[str, Any]:
    """Restore a compressed store to PNG, names and folders as they were."""
    check_inputs(params)
    result = run_job("decompress", params)
    report("bulk-decompress", f"bulk decompress -> {result['dest']}", _summary(result))
    return result
