"""Manifests beside the shards, and the dataset version derived from them.

    DIR/manifest.json           counts (seen = accepted + rejected + duplicates), rejections by
                                reason, samples/shards/bytes per split, the settings used, and
                                `dataset_version`
    DIR/{split}/manifest.json   that split's shards: name, sample count, bytes, sha256
    DIR/rejected.jsonl          one {"source", "reason", "detail"} per rejected file
    DIR/duplicates.jsonl        one {"source", "duplicate_of", "sha256"} per dropped duplicate

`dataset_version` is the sha256 of the lines "SPLIT/SHARD SHA256\\n" over all shards, sorted:
it changes exactly when a shard's bytes change, and it is what training runs record as the
data version. DIR may be a local path or an fsspec URL.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from texpress.data import storage
from texpress.data.shards import file_sha256
from texpress.data.split import SPLITS
from texpress.errors import InputError

MANIFEST = "manifest.json"
REJECTED = "rejected.jsonl"
DUPLICATES = "duplicates.jsonl"
FORMAT = "texpress-webdataset/1"


def dumps(obj: Any) -> str:
    """Canonical JSON text: sorted keys, fixed indentation, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(dumps(obj), encoding="utf-8")


def compute_version(split_manifests: dict[str, dict[str, Any]]) -> str:
    lines = sorted(f"{split}/{shard['name']} {shard['sha256']}\n"
                   for split, m in split_manifests.items() for shard in m.get("shards", []))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _read_json(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    try:
        data = storage.read_bytes(url, endpoint_url)
    except FileNotFoundError:
        raise InputError(f"{url}: not found (is this a texpress shard directory?)") from None
    except OSError as exc:
        raise InputError(f"{url}: cannot read ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{url}: not a valid manifest (bad JSON)") from None
    if not isinstance(obj, dict):
        raise InputError(f"{url}: not a valid manifest")
    return obj


def read_manifest(root: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """The top-level manifest of a shard directory."""
    manifest = _read_json(storage.join(str(root), MANIFEST), endpoint_url)
    if manifest.get("format") != FORMAT:
        raise InputError(f"{root}: not a texpress shard directory (manifest format {manifest.get('format')!r})")
    return manifest


def read_split_manifest(root: str | Path, split: str, endpoint_url: str | None = None) -> dict[str, Any]:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return _read_json(storage.join(str(root), split, MANIFEST), endpoint_url)


def dataset_version(root: str | Path, endpoint_url: str | None = None) -> str:
    """The content hash of the whole dataset in `root` (64 hex characters)."""
    return str(read_manifest(root, endpoint_url)["dataset_version"])


def verify(root: str | Path) -> list[str]:
    """Problems found when re-hashing a local shard directory against its manifests (empty: all good)."""
    root = Path(root)
    problems: list[str] = []
    manifest = read_manifest(root)
    split_manifests = {}
    for split in SPLITS:
        m = read_split_manifest(root, split)
        split_manifests[split] = m
        for shard in m.get("shards", []):
            path = root / split / shard["name"]
            if not path.is_file():
                problems.append(f"{split}/{shard['name']}: missing")
            elif file_sha256(path) != shard["sha256"]:
                problems.append(f"{split}/{shard['name']}: sha256 differs from the manifest")
        if m.get("count") != manifest["splits"].get(split):
            problems.append(f"{split}: count differs between manifests")
    if compute_version(split_manifests) != manifest.get("dataset_version"):
        problems.append("dataset_version does not match the shard hashes")
    return problems


def stats(root: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """What `texpress data stats --json` prints."""
    m = read_manifest(root, endpoint_url)
    return {
        "dataset_version": m["dataset_version"],
        "seen": m["seen"],
        "accepted": m["accepted"],
        "rejected": m["rejected"],
        "duplicates": m["duplicates"],
        "source_errors": m.get("source_errors", 0),
        "rejected_by_reason": m.get("rejected_by_reason", {}),
        "splits": m["splits"],
        "shards": m["shards"],
        "bytes": m["bytes"],
    }
