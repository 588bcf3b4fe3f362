"""File plumbing for the batch commands: expanding inputs (files, folders) to jobs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def expand(inputs: list[Path], out_dir: Path, suffixes: set[str], out_suffix: str) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Files map to OUT/name; folders are walked recursively and mirrored under OUT by relative path.

    Inside folders only files with one of `suffixes` are taken; a file named explicitly is always
    tried. Returns the jobs and (path, reason) for inputs that cannot even be attempted."""
    jobs: list[Job] = []
    problems: list[tuple[Path, str]] = []
    seen_targets: dict[Path, Path] = {}
    seen_sources: set[Path] = set()

    def add(source: Path, rel: Path) -> None:
        key = source.absolute().parent.resolve() / source.name  # links to one file stay separate inputs
        if key in seen_sources:  # the same file named twice (or also inside a folder given): once is enough
            return
        seen_sources.add(key)
        target = out_dir / rel.with_suffix(out_suffix)
        other = seen_targets.get(target)
        if other is not None:
            problems.append((source, f"would write the same output as {other} ({target})"))
            return
        seen_targets[target] = source
        jobs.append(Job(source, target))

    for inp in inputs:
        if inp.is_dir():
            for root, dirs, files in os.walk(inp):
                dirs.sort()
                for name in sorted(files):
                    path = Path(root) / name
                    if path.suffix.lower() in suffixes and not name.startswith("."):
                        add(path, path.relative_to(inp))
        elif inp.exists() or inp.is_symlink():
            add(inp, Path(inp.name))
        else:
            problems.append((inp, "no such file or directory"))
    return jobs, problems
