"""The trained checkpoints shipped in the repository's models/shipped/ folder, by name (docs/models.md).

models/shipped/models.json lists them: name -> file (in that folder), fingerprint, preset, the rate
weight it was trained with and its numbers on the val photos. `texpress compress` uses the default
one when --model is omitted, `decompress` the shipped model whose fingerprint the .tpx header names,
and every command that reads a checkpoint accepts a shipped name (`lite-q2`) as well as a path or a
models:/ URI (texpress.registry.refs resolves them). This module is the catalogue alone: adding a
model to it (`texpress models ship`) measures it, and lives in texpress.registry.shipping.
$TEXPRESS_MODELS_DIR points at another folder with the same layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from texpress.errors import CheckpointError

MANIFEST = "models.json"


def models_dir() -> Path:
    """$TEXPRESS_MODELS_DIR, else the checkout's models/shipped/ (src/texpress/codec -> repository root)."""
    env = os.environ.get("TEXPRESS_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models" / "shipped"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    path: Path
    fingerprint: str
    preset: str
    info: dict

    @property
    def curve(self) -> str:
        """The rate-distortion curve it is a point of: its preset, unless shipped with another (lite-gan)."""
        return self.info.get("curve", self.preset)


def manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no shipped models: {folder / MANIFEST} is missing (pass --model)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / MANIFEST}: unreadable ({type(exc).__name__})") from None


def _models(folder: Path, manifest: dict) -> dict[str, ShippedModel]:
    return {name: ShippedModel(name, folder / entry["file"], entry["fingerprint"], entry["preset"], entry)
            for name, entry in manifest["models"].items()}


def shipped_models() -> dict[str, ShippedModel]:
    folder = models_dir()
    return _models(folder, manifest(folder))


def default_model() -> ShippedModel:
    """The model `texpress compress` uses when --model is omitted (one read of the manifest)."""
    folder = models_dir()
    listing = manifest(folder)
    return _models(folder, listing)[listing["default"]]


def by_name(name: str) -> ShippedModel | None:
    """The shipped model called `name`, or None (also when nothing is shipped)."""
    try:
        return shipped_models().get(name)
    except CheckpointError:
        return None


def by_fingerprint(fingerprint: str) -> ShippedModel:
    """The shipped model that made a .tpx file whose header names `fingerprint`."""
    for model in shipped_models().values():
        if model.fingerprint == fingerprint:
            return model
    raise CheckpointError(f"the file was made by model {fingerprint}, which is not one of the shipped models; "
                          "pass the checkpoint that made it with --model")
