"""Checkpoint references: a plain path, a shipped model's name (codec.shipped), or a URI that a higher
layer knows how to turn into one.

The codec layer may not import the registry (layers: codec <- ... <- registry <- cli), yet every
place that reads a checkpoint should accept `models:/NAME@ALIAS`. So the codec keeps a table of
resolvers by URI prefix, empty on import; the CLI (or any program that wants it) installs the
registry's resolver with `texpress.registry.refs.install()`. `read_checkpoint` resolves through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from texpress.errors import CheckpointError

Resolver = Callable[[str], Path]

_RESOLVERS: dict[str, Resolver] = {}
KNOWN_PREFIXES = ("models:/", "runs:/")  # named in the error when no resolver is installed


def add_resolver(prefix: str, resolver: Resolver) -> None:
    """Resolve references that start with `prefix` with `resolver` (installing twice replaces)."""
    _RESOLVERS[prefix] = resolver


def resolve(ref: str | os.PathLike) -> Path:
    """A local checkpoint path for `ref`: URIs through their resolver, plain paths unchanged."""
    text = os.fspath(ref)
    for prefix, resolver in _RESOLVERS.items():
        if text.startswith(prefix):
            return resolver(text)
    if text.startswith(KNOWN_PREFIXES):
        raise CheckpointError(f"{text}: model URIs need the registry layer "
                              "(call texpress.registry.refs.install() first)")
    path = Path(ref)
    if not path.exists() and "/" not in text:  # a shipped model's name (models/shipped/models.json)
        from texpress.codec.shipped import by_name

        shipped = by_name(text)
        if shipped is not None:
            return shipped.path
    return path
