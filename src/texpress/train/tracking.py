"""MLflow tracking, done by hand from rank 0 (Ray Train V2 refuses MLflowLoggerCallback).

The driver resolves the tracking store and creates the experiment (texpress.mlstore); rank 0 creates the run (or
re-opens it after a restart: its id is in every training checkpoint), logs params, tags, per-step
metrics in batches, validation image grids and the final artifacts. Only MlflowClient is used:
no fluent global state in the Ray worker processes.

The store (texpress.mlstore): `sqlite:///<working dir>/mlflow.db` with artifacts in `<working dir>/mlartifacts`;
MLFLOW_TRACKING_URI selects another store or a server (start it with --serve-artifacts so workers
on other machines do not write artifacts to their own disks).

A run that fails for good ends FAILED (KILLED when interrupted) with the reason in the tag
`failure_reason`; a resumed run is set back to RUNNING. `NullTracker` stands in where MLflow is not
installed or not wanted (the single-process trainer): mlflow is only imported inside functions.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from texpress.mlstore import ensure_experiment, resolve_tracking
from texpress.train.state import Session
from texpress.train.step_loop import say

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAG_CHARS = 5000
FAILURE_TAG = "failure_reason"


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """HEAD of the git checkout that holds the texpress source (else the one around `cwd`), with
    `-dirty` when tracked files changed; None outside git."""
    if cwd is None:
        package_dir = Path(__file__).resolve().parent
        return _git_head(package_dir) or _git_head(Path.cwd())
    return _git_head(Path(cwd))


def _git_head(cwd: Path) -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def flatten_params(prefix: str, d: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(f"{key}.", v))
        else:
            out[key] = str(v)
    return out


class RunLogger:
    """Logs into one MLflow run; metrics are buffered and sent with log_batch."""

    def __init__(self, uri: str, run_id: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        self.run_id = run_id
        self._buffer: list = []

    @classmethod
    def start(cls, uri: str, experiment_id: str, *, run_name: str | None, params: dict[str, str],
              tags: dict[str, str]) -> "RunLogger":
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        run = client.create_run(experiment_id, run_name=run_name, tags={k: v for k, v in tags.items() if v is not None})
        logger = cls(uri, run.info.run_id)
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(logger.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
        return logger

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, int(step)) for k, v in metrics.items())

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_METRICS_PER_BATCH], self._buffer[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_image(self, image, artifact_file: str) -> None:
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def resume(self, step: int) -> None:
        """The run goes on after a restart: RUNNING again, tagged with the step it resumed at."""
        self.client.update_run(self.run_id, status="RUNNING")
        self.set_tags({"resumed_from_step": str(step)})

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """End the run as FAILED (or KILLED) with `reason` in the failure_reason tag."""
        try:
            self.flush()
        finally:
            end_run(self.client, self.run_id, reason, status)


def end_run(client, run_id: str, reason: str, status: str = "FAILED") -> None:
    client.set_tag(run_id, FAILURE_TAG, reason[:MAX_TAG_CHARS])
    client.set_terminated(run_id, status)


def fail_active_runs(uri: str, experiment_id: str, tags: dict[str, str], reason: str,
                     status: str = "FAILED") -> list[str]:
    """End the RUNNING runs that carry all of `tags` as `status` with `reason` (the Ray driver's view:
    its workers created the run, and only the driver knows the training failed for good)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    ended = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        if all(run.data.tags.get(k) == v for k, v in tags.items()):  # compared here: no quoting of paths
            end_run(client, run.info.run_id, reason, status)
            ended.append(run.info.run_id)
    return ended


class NullTracker:
    """The tracker's interface, doing nothing: training without MLflow."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_image(self, image, artifact_file: str) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def resume(self, step: int) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass

    def fail(self, reason: str, status: str = "FAILED") -> None:
        pass


def open_tracker(enabled: bool, s: Session, loader_cfg, *, params: dict[str, str], tags: dict[str, str],
                 tracking_dir: str | os.PathLike | None):
    """The single-process trainer's MLflow set-up: (tracker, uri), a RunLogger on the run the state names
    (else a new one with every setting as params) when MLflow is installed and wanted, else a NullTracker."""
    if not enabled:
        return NullTracker(), ""
    if importlib.util.find_spec("mlflow") is None:  # a bare GPU box: training goes on untracked
        return NullTracker(), ""
    uri, artifacts = resolve_tracking(tracking_dir)
    experiment_id = ensure_experiment(uri, s.cfg.experiment, artifacts)
    if s.run_id:
        try:
            tracker = RunLogger(uri, s.run_id)
            tracker.resume(s.step)
            return tracker, uri
        except Exception:  # the checkpoints came from another machine or store: a new run goes on
            say(f"MLflow run {s.run_id} is not in {uri}; logging the rest of the training to a new run")
    all_params = {**flatten_params("train.", s.cfg.to_dict()), **flatten_params("loader.", loader_cfg.to_dict()),
                  **flatten_params("model.", s.model_cfg.to_dict()), "world_size": "1", **params}
    tracker = RunLogger.start(uri, experiment_id, run_name=tags.get("run_name"), params=all_params, tags=tags)
    s.run_id = tracker.run_id
    return tracker, uri
