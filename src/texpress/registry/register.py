"""Registering a checkpoint as a model version: the pyfunc model is logged into a run (the training
run, found by the model's fingerprint, when the store has it, else a run of the registry's own
experiment), then a version is created from it with the model tags. Registration is idempotent: a
checkpoint whose fingerprint is already a version of NAME returns that version (with its eval tags
refreshed)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texpress.codec.checkpoint import read_checkpoint
from texpress.evaluate.tracking import find_training_run
from texpress.mlstore import ensure_experiment
from texpress.registry.config import RegistryConfig
from texpress.registry.store import RegistryError, Store, check_name, mlflow_errors, name_lock, open_store
from texpress.registry.tags import FINGERPRINT, eval_tags, model_tags

MODEL_ARTIFACT = "model/model.ckpt"  # where the train stage logs the checkpoint in its run


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    fingerprint: str
    run_id: str
    created: bool


def default_name(checkpoint: str | os.PathLike) -> str:
    """`texpress-<preset>` from the checkpoint's metadata (`texpress` when it names none)."""
    preset = (read_checkpoint(checkpoint).get("meta") or {}).get("preset")
    return f"texpress-{preset}" if preset else "texpress"


def find_version(client, name: str, fingerprint: str):
    """The newest version of `name` holding this fingerprint, or None."""
    versions = client.search_model_versions(f"name = '{name}' and tag.`{FINGERPRINT}` = '{fingerprint}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def _run_in_store(client, run_id: str | None) -> str | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        client.get_run(run_id)
        return run_id
    except MlflowException:
        return None


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="texpress learned image codec (docs/registry.md)")


def register_checkpoint(checkpoint: str | os.PathLike, name: str | None = None, *, tracking_uri: str | None = None,
                        run_id: str | None = None, eval_summary: dict[str, Any] | str | os.PathLike | None = None,
                        cfg: RegistryConfig | None = None) -> Registered:
    """Create (or find) the model version of `checkpoint` under `name`; see the module docstring.

    run_id: the training run (default: the one the checkpoint names, when the store has it).
    eval_summary: a texpress evaluation summary (dict or summary.json) of this checkpoint: `eval.*` tags."""
    cfg = cfg or RegistryConfig()
    payload = read_checkpoint(checkpoint)
    fp = payload["fingerprint"]
    name = check_name(name or cfg.name or default_name(checkpoint))
    summary = _load_summary(eval_summary)
    extra = eval_tags(summary, fp) if summary else {}
    store = open_store(tracking_uri)
    client = store.client()
    with mlflow_errors(f"registering {checkpoint} as {name}"):
        if run_id and not _run_in_store(client, run_id):
            raise RegistryError(f"MLflow run {run_id} not found in {store.uri}")
        with name_lock(client, name, cfg.lock_timeout_s):
            _ensure_model(client, name)
            found = find_version(client, name, fp)
            if found is not None:
                for k, v in extra.items():
                    client.set_model_version_tag(name, found.version, k, v)
                return Registered(name, str(found.version), fp, found.run_id or "", created=False)
            training_run = run_id or find_training_run(client, fp, (payload.get("meta") or {}).get("mlflow_run_id"))
            commit = client.get_run(training_run).data.tags.get("git_commit") if training_run else None
            tags = {**model_tags(checkpoint, training_run, commit), **extra}
            run_id = training_run or _registry_run(client, store, cfg, fp)
            source = _log_pyfunc(client, run_id, checkpoint)
            mv = client.create_model_version(name, source, run_id=run_id, tags=tags,
                                             description=f"texpress model {fp}")
            if not training_run:
                client.set_terminated(run_id)
    return Registered(name, str(mv.version), fp, run_id, created=True)


def _load_summary(summary: dict[str, Any] | str | os.PathLike | None) -> dict[str, Any] | None:
    if summary is None or isinstance(summary, dict):
        return summary
    try:
        return json.loads(Path(summary).read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{summary}: not a readable evaluation summary ({type(exc).__name__})") from None


def _registry_run(client, store: Store, cfg: RegistryConfig, fingerprint: str) -> str:
    """A run of the registry's experiment for a checkpoint that has no training run in this store."""
    experiment_id = ensure_experiment(store.uri, cfg.experiment, store.artifact_location)
    run = client.create_run(experiment_id, run_name=f"register-{fingerprint[:8]}",
                            tags={FINGERPRINT: fingerprint, "texpress.kind": "register"})
    return run.info.run_id


def _log_pyfunc(client, run_id: str, checkpoint: str | os.PathLike) -> str:
    """Log the pyfunc model folder into the run; returns its artifact URI (the version's source)."""
    from texpress.registry.pyfunc import MODEL_DIR, save_pyfunc  # imports mlflow.pyfunc: only when registering

    with tempfile.TemporaryDirectory(prefix="texpress-register-") as tmp:
        folder = save_pyfunc(checkpoint, Path(tmp) / MODEL_DIR)
        client.log_artifacts(run_id, str(folder), MODEL_DIR)
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_DIR}"


def register_run(run_id: str, name: str | None = None, *, tracking_uri: str | None = None,
                 eval_summary: dict[str, Any] | str | os.PathLike | None = None,
                 cfg: RegistryConfig | None = None) -> Registered:
    """Register the checkpoint a training run logged (artifact `model/model.ckpt`)."""
    from mlflow.exceptions import MlflowException

    store = open_store(tracking_uri)
    client = store.client()
    with mlflow_errors(f"run {run_id}"):
        try:
            client.get_run(run_id)
        except MlflowException:
            raise RegistryError(f"MLflow run {run_id} not found in {store.uri}") from None
        with tempfile.TemporaryDirectory(prefix="texpress-run-") as tmp:
            try:
                path = client.download_artifacts(run_id, MODEL_ARTIFACT, tmp)
            except (MlflowException, OSError):
                raise RegistryError(f"MLflow run {run_id} has no checkpoint ({MODEL_ARTIFACT})") from None
            return register_checkpoint(path, name, tracking_uri=tracking_uri, run_id=run_id,
                                       eval_summary=eval_summary, cfg=cfg)
