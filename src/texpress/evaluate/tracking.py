"""Logging an evaluation into an existing MLflow run: the same numbers and figures as the files.

Metrics (MlflowClient.log_batch; step = index of the point in order of rate):
    eval/<curve>/<metric>                 every curve's points: bpp, psnr-rgb, ms-ssim-rgb, texture scores
    eval/bd_rate/<model>_vs_<baseline>/<psnr-rgb|ms-ssim-rgb>      (step 0)
    eval/rate_delta/<model>_vs_<baseline>/<metric>                  (step = model point)
    eval/images                                                      (step 0)
Artifacts: the whole output folder under `eval/` (summary.json, metrics.json, per_image.csv,
rd.csv, timings, curves/, the PNG figures). Tags: eval.images, eval.baselines, eval.models.

The store is MLFLOW_TRACKING_URI when set, else `sqlite:///<working dir>/mlflow.db`, the same
default the training stage uses, so a run made by `dvc repro train` is found by `evaluate`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from texpress.errors import TexpressError
from texpress.evaluate.curves import FIDELITY, TEXTURE
from texpress.mlstore import default_tracking_uri, sqlite_store_missing

MAX_METRICS_PER_BATCH = 1000


class TrackingError(TexpressError):
    """The MLflow store or run cannot be used."""


def _metric_key(*parts: str) -> str:
    """MLflow keys allow letters, digits, _ - . / and spaces; anything else becomes _."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ ")
    return "/".join("".join(ch if ch in ok else "_" for ch in p) for p in parts)


def metrics_of(summary: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(key, value, step) for every finite number the summary reports."""
    out: list[tuple[str, float, int]] = [("eval/images", float(summary["images"]["count"]), 0)]
    for name, curve in summary["curves"].items():
        for step, p in enumerate(curve["points"]):
            for m in (*FIDELITY, *TEXTURE):
                out.append((_metric_key("eval", name, m), p.get(m), step))
    for model, row in summary["bd_rate"].items():
        for baseline, entry in row.items():
            for m in ("psnr-rgb", "ms-ssim-rgb"):
                out.append((_metric_key("eval", "bd_rate", f"{model}_vs_{baseline}", m), entry.get(m), 0))
    for model, row in summary["rate_delta"].items():
        for baseline, entry in row.items():
            for m, values in entry.items():
                for step, v in enumerate(values):
                    out.append((_metric_key("eval", "rate_delta", f"{model}_vs_{baseline}", m), v, step))
    return [(k, float(v), s) for k, v, s in out if isinstance(v, (int, float)) and math.isfinite(v)]


def find_training_run(client, fingerprint: str | None, run_id: str | None = None) -> str | None:
    """The MLflow run that trained a model, if the store has it: `run_id` (older checkpoints name it in
    their meta), else the newest run tagged with the model's fingerprint. Checkpoints no longer carry
    run ids: a run id differs from run to run and would make every `dvc repro` rewrite dvc.lock."""
    from mlflow.exceptions import MlflowException

    try:
        if run_id:
            client.get_run(run_id)
            return run_id
    except MlflowException:
        pass
    if not fingerprint:
        return None
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, f"tags.model_fingerprint = '{fingerprint}'",
                                  order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    except MlflowException:
        return None
    return runs[0].info.run_id if runs else None


def check_run(run_id: str, tracking_uri: str | None = None) -> str:
    """The tracking URI in use (`tracking_uri`, else the default) once run `run_id` is found there."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if sqlite_store_missing(uri):
        raise TrackingError(f"MLflow run {run_id} not found: there is no store at {uri}")  # and do not create one
    try:
        MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise TrackingError(f"MLflow run {run_id} not found in {uri}") from None
    return uri


def log_to_run(run_id: str, summary: dict[str, Any], out_dir: Path, tracking_uri: str | None = None) -> str:
    """Log the evaluation's metrics, tags and output folder to run `run_id`; returns the tracking URI used."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = check_run(run_id, tracking_uri)
    client = MlflowClient(uri)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, v, s in metrics_of(summary)]
    try:
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH])
        curves = summary["curves"]
        client.set_tag(run_id, "eval.images", str(summary["images"]["count"]))
        client.set_tag(run_id, "eval.baselines", ",".join(k for k, c in curves.items() if c["kind"] == "baseline"))
        client.set_tag(run_id, "eval.models", ",".join(k for k, c in curves.items() if c["kind"] == "model"))
        for name, version in summary.get("libraries", {}).items():
            client.set_tag(run_id, f"eval.library.{name}", version)
        client.log_artifacts(run_id, str(out_dir), "eval")
    except MlflowException as exc:
        raise TrackingError(f"logging to MLflow run {run_id} failed: {str(exc).splitlines()[0]}") from None
    return uri
