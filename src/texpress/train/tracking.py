"""MLflow tracking, done by hand from rank 0 (Ray Train V2 refuses MLflowLoggerCallback).

The driver resolves the tracking store and creates the experiment; rank 0 creates the run (or
re-opens it after a restart: its id is in every training checkpoint), logs params, tags, per-step
metrics in batches, validation image grids and the final artifacts. Only MlflowClient is used:
no fluent global state in the Ray worker processes.

Default store: `sqlite:///<working dir>/mlflow.db` with artifacts in `<working dir>/mlartifacts`;
MLFLOW_TRACKING_URI selects another store or a server (start it with --serve-artifacts so workers
on other machines do not write artifacts to their own disks).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


def resolve_tracking(workdir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment or None for the store's default)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    base = Path(workdir or os.getcwd()).resolve()
    return f"sqlite:///{base / DEFAULT_DB}", (base / DEFAULT_ARTIFACTS).as_uri()


def ensure_experiment(uri: str, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with its artifact location) when missing."""
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:  # created concurrently
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == LifecycleStage.DELETED:
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


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

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)
