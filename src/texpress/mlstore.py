"""The MLflow store every layer shares: which one (MLFLOW_TRACKING_URI, else `./mlflow.db` with
artifacts in `./mlartifacts`), whether a local one exists yet, and an experiment in it.

Training logs to it, evaluation logs into the training's run, the registry keeps model versions in
it. mlflow itself is imported only inside the function that needs it (it is heavy and optional for
the single-process trainer)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def resolve_tracking(workdir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment or None for the store's default)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    base = Path(workdir or os.getcwd()).resolve()
    return f"sqlite:///{base / DEFAULT_DB}", (base / DEFAULT_ARTIFACTS).as_uri()


def default_tracking_uri(workdir: str | os.PathLike | None = None) -> str:
    """The tracking URI alone (resolve_tracking without the artifact location)."""
    return resolve_tracking(workdir)[0]


def sqlite_store_missing(uri: str) -> bool:
    """True for a local sqlite store whose file does not exist: readers must not create one by asking."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()


def _quiet_store_setup() -> None:
    """MLflow's sqlite store announces every table it creates on INFO: not news for a user."""
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_experiment(uri: str, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with its artifact location) when missing."""
    _quiet_store_setup()
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
