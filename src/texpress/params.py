"""params.yaml sections and the config dataclasses they map onto, one to one.

Every layer's config is built through `build_section`, so an unknown key (a typo) or a value of the
wrong type is a one-line ConfigError, never a silent default or a traceback."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from texpress.errors import ConfigError

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
