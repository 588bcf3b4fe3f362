"""`--model REF`: a checkpoint path, a shipped model's name, or `models:/NAME@ALIAS` resolved by the
model registry; without it, the shipped default lite."""

from __future__ import annotations

from pathlib import Path

from texpress.errors import CheckpointError

REGISTRY_PREFIX = "models:/"


def resolve_model(ref: str | Path | None) -> Path:
    """The local checkpoint file behind REF (the registry is imported only for models:/ refs); a
    shipped model's name is its file, and None the shipped default lite (texpress.codec.shipped)."""
    from texpress.codec.refs import resolve
    from texpress.codec.shipped import default_model

    if ref is None:
        return default_model().path
    text = str(ref)
    if text.startswith(REGISTRY_PREFIX):
        try:
            from texpress.registry.refs import resolve_checkpoint
        except ImportError:
            raise CheckpointError(f"{text}: this install has no model registry to resolve models:/ references") from None
        return Path(resolve_checkpoint(text))
    path = resolve(text)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def fingerprint_of(path: Path) -> str:
    """The checkpoint's model fingerprint (reads and checks the file: a bad one fails before any work)."""
    from texpress.codec.checkpoint import read_checkpoint

    return str(read_checkpoint(path)["fingerprint"])
