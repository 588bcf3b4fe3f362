"""The MLflow model registry as texpress uses it: which store, one-line errors, model references,
and a per-name lock so that two promotions never interleave.

Store: `tracking_uri` when given, else $MLFLOW_TRACKING_URI, else `sqlite:///<cwd>/mlflow.db` with
artifacts in `<cwd>/mlartifacts` - the store the train stage logs to (texpress.train.tracking).
"""

from __future__ import annotations

import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from texpress.errors import ConfigError, TexpressError
from texpress.mlstore import resolve_tracking, sqlite_store_missing

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
LOCK_SUFFIX = ".promotion-lock"


class RegistryError(TexpressError):
    """The registry cannot be used: unknown model, version or alias, unreachable store, bad artifact."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(LOCK_SUFFIX):
        raise ConfigError(f"model name {name!r}: use letters, digits, '_', '-' and '.'")
    return name


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Store:
    """A tracking/registry URI and, for the local default, where new experiments keep artifacts."""

    uri: str
    artifact_location: str | None = None

    def client(self):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        except MlflowException as exc:  # e.g. a scheme MLflow has no store for
            raise RegistryError(f"{self.uri}: not a usable MLflow store ({first_line(exc).strip()})") from None


def open_store(tracking_uri: str | None = None, *, create: bool = True) -> Store:
    """The store to use; an http(s) server is checked first (an unreachable one is one RegistryError,
    not minutes of retries), a missing local sqlite file is an error unless `create`."""
    if tracking_uri and tracking_uri.startswith("sqlite:///"):  # artifacts beside the database, as train does
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        store = Store(tracking_uri, (db.parent.resolve() / "mlartifacts").as_uri())
    elif tracking_uri:
        store = Store(tracking_uri)
    else:
        uri, artifacts = resolve_tracking()
        store = Store(uri, artifacts)
    if store.uri.startswith(("http://", "https://")):
        _check_server(store.uri)
    elif not create and sqlite_store_missing(store.uri):
        raise RegistryError(f"no MLflow store at {store.uri}")
    return store


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise RegistryError(f"MLflow tracking server {uri} is unreachable ({type(exc).__name__})") from None


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """MLflow and network failures inside the block become one RegistryError line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except TexpressError:
        raise
    except MlflowException as exc:
        raise RegistryError(f"{what}: {first_line(exc)}") from None
    except OSError as exc:
        raise RegistryError(f"{what}: {exc.strerror or first_line(exc)}") from None


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `NAME@ALIAS`, `NAME/VERSION` or `NAME` ->
    (name, version or None, alias or None)."""
    text = ref.removeprefix("models:/").strip("/")
    if "@" in text:
        name, _, alias = text.partition("@")
        if not alias or not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
            raise RegistryError(f"{ref}: bad alias (expected NAME@ALIAS)")
        return check_ref_name(name, ref), None, alias
    name, _, version = text.partition("/")
    if version and not version.isdigit():
        raise RegistryError(f"{ref}: bad version {version!r} (expected NAME/VERSION with a number)")
    return check_ref_name(name, ref), version or None, None


def check_ref_name(name: str, ref: str) -> str:
    try:
        return check_name(name)
    except ConfigError:
        raise RegistryError(f"{ref}: bad model name {name!r}") from None


def get_version(client, name: str, version: str | None = None, alias: str | None = None):
    """The ModelVersion named by version or alias; RegistryError naming what is missing."""
    from mlflow.exceptions import MlflowException

    with mlflow_errors(f"model {name}"):
        try:
            client.get_registered_model(name)
        except MlflowException:
            raise RegistryError(f"no registered model {name!r}") from None
        try:
            if alias:
                return client.get_model_version_by_alias(name, alias)
            return client.get_model_version(name, str(version))
        except MlflowException:
            what = f"alias @{alias}" if alias else f"version {version}"
            raise RegistryError(f"model {name!r} has no {what}") from None


def alias_version(client, name: str, alias: str) -> str | None:
    """The version that holds `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@contextmanager
def name_lock(client, name: str, timeout_s: float, stale_s: float = 6 * 3600.0) -> Iterator[None]:
    """Exclusive per model name across processes and machines sharing the store.

    The lock is a registered model `NAME.promotion-lock`: creating one is atomic in every MLflow
    backend (the name is unique), so exactly one holder exists. A lock older than stale_s (a
    crashed holder) is broken."""
    from mlflow.exceptions import MlflowException

    lock, token, deadline = name + LOCK_SUFFIX, uuid.uuid4().hex, time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, tags={"token": token, "since": str(time.time())},
                                           description=f"held while a promotion of {name} runs")
            break
        except MlflowException:
            _break_if_stale(client, lock, stale_s)
            if time.monotonic() > deadline:
                raise RegistryError(f"another promotion of {name} holds the lock ({lock}) "
                                    f"for more than {timeout_s:.0f} s") from None
            time.sleep(0.5)
    try:
        yield
    finally:
        try:
            held = client.get_registered_model(lock)
            if held.tags.get("token") == token:
                client.delete_registered_model(lock)
        except MlflowException:
            pass


def _break_if_stale(client, lock: str, stale_s: float) -> None:
    from mlflow.exceptions import MlflowException

    try:
        since = float(client.get_registered_model(lock).tags.get("since", "inf"))
        if time.time() - since > stale_s:
            client.delete_registered_model(lock)
    except (MlflowException, ValueError):
        pass
