"""The one place where a model reference becomes a checkpoint file, before anything reads it.

A reference is a path, a shipped model's name (`lite-q2`, texpress.codec.shipped),
`models:/NAME@ALIAS` or `models:/NAME/VERSION`, or nothing (the shipped default). A model URI is
looked up in the registry (store: $MLFLOW_TRACKING_URI, else ./mlflow.db), and the version's
checkpoint artifact is downloaded once into a cache keyed by its fingerprint:
`$TEXPRESS_CACHE_DIR/models/<fingerprint>/model.ckpt` (or .safetensors) (default cache:
$XDG_CACHE_HOME/texpress or ~/.cache/texpress). The alias is looked up every time (it moves); the
download happens once.

The commands, pipeline stages and flows resolve their --model / --from / init_from here and hand
the library below a local path (bulk jobs hand it to their workers).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from texpress.codec.checkpoint import read_checkpoint
from texpress.codec.shipped import by_name, default_model
from texpress.errors import CheckpointError
from texpress.registry.store import RegistryError, get_version, mlflow_errors, open_store, parse_ref
from texpress.registry.tags import FINGERPRINT

PREFIX = "models:/"


def cache_dir() -> Path:
    root = os.environ.get("TEXPRESS_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "texpress"


def resolve_checkpoint(ref: str | os.PathLike | None, tracking_uri: str | None = None) -> Path:
    """The local checkpoint behind `ref` (module docstring): None is the shipped default; a path
    that exists is itself; a bare name that is no file is a shipped model's; a models:/ URI comes
    from the registry. A reference that names nothing is a CheckpointError."""
    if ref is None:
        return default_model().path
    text = os.fspath(ref)
    if not text.startswith(PREFIX):
        path = Path(text)
        if not path.exists() and "/" not in text and (shipped := by_name(text)) is not None:
            return shipped.path
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint file")
        return path
    name, version, alias = parse_ref(text)
    store = open_store(tracking_uri, create=False)
    client = store.client()
    mv = get_version(client, name, version, alias)
    fingerprint = (mv.tags or {}).get(FINGERPRINT)
    if not fingerprint:
        raise RegistryError(f"{text}: version {mv.version} has no {FINGERPRINT} tag (not a texpress model)")
    folder = cache_dir() / "models" / fingerprint
    cached = sorted(folder.glob("model.*")) if folder.is_dir() else []
    if cached:
        return cached[0]
    with mlflow_errors(f"{text}: downloading version {mv.version}"):
        return _download(mv.source, store.uri, folder, fingerprint, text)


def _download(source: str, uri: str, folder: Path, fingerprint: str, ref: str) -> Path:
    """The checkpoint artifact of a pyfunc model folder, checked against its fingerprint, renamed into place."""
    import mlflow.artifacts

    from texpress.registry.pyfunc import ARTIFACT  # imports mlflow: only where a download happens

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/artifacts",
                                                       dst_path=tmp, tracking_uri=uri))
        files = [p for p in got.rglob("*") if p.is_file()]
        if len(files) != 1:
            raise RegistryError(f"{ref}: the model holds {len(files)} files under artifacts/, expected the "
                                f"{ARTIFACT} alone")
        try:
            payload = read_checkpoint(files[0])
        except CheckpointError:
            raise RegistryError(f"{ref}: the stored checkpoint is corrupt") from None
        if payload["fingerprint"] != fingerprint:
            raise RegistryError(f"{ref}: the stored checkpoint is model {payload['fingerprint']}, "
                                f"but the version is tagged {fingerprint}")
        target = folder / f"model{files[0].suffix}"
        os.replace(files[0], target)
    return target
