"""params.yaml sections and the config dataclasses they map onto, one to one.

Every layer's config is built through `build_section`, so an unknown key (a typo) or a value of the
wrong type is a one-line ConfigError, never a silent default or a traceback."""

from __future__ import annotations

from dataclasses import fields
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

from texpress.errors import ConfigError
from texpress.files import write_atomic

T = TypeVar("T")


def build_section(cls: type[T], values: dict[str, Any] | None, where: str) -> T:
    """cls(**values), refusing unknown keys and wrong-typed values with a one-line ConfigError."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping")
    unknown = set(values) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown {where} keys: {', '.join(sorted(unknown))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # a value of the wrong type, e.g. min_side: abc
        raise ConfigError(f"{where}: {exc}") from None


def load_params(path: str | Path, section: str) -> dict[str, Any]:
    """One section of a params.yaml file (an empty dict when the section is absent)."""
    import yaml

    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    value = params.get(section) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: section {section!r} must be a mapping")
    return value


def set_params(path: str | Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Write `changes` ({"section.key": value}) into a params.yaml file, keeping its comments and
    layout, as `dvc exp run --set-param` would but without reformatting the rest of the file.

    A key must already exist (a typo is a ConfigError, not a new silent key). Returns the previous
    values of the keys that changed; the file is replaced atomically, and left alone when none did."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yaml = YAML()  # round trip: comments, order and flow-style lists are kept
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = Path(path)
    try:
        doc = yaml.load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    old: dict[str, Any] = {}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"{path}: no parameter {dotted!r}")
        if node[leaf] == value or (isinstance(value, tuple) and node[leaf] == list(value)):
            continue
        old[dotted] = list(node[leaf]) if isinstance(node[leaf], list) else node[leaf]
        if isinstance(value, (list, tuple)):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        node[leaf] = value
    if old:
        out = StringIO()
        yaml.dump(doc, out)
        write_atomic(path, out.getvalue().encode())
    return old
