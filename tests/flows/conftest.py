"""Shared set-up of the flow tests: a throw-away texpress checkout (the tracked files of this one, as
a fresh clone would have them) in its own git and DVC repo, and the environment to run it in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import isolated_dvc_env

ROOT = Path(__file__).resolve().parents[2]
SKIP = ("tests/", "docs/", "benchmarks/", "reports/", "models/train_metrics.json", ".ci/")  # models/shipped: kept


def make_checkout(dest: Path, env: dict[str, str]) -> Path:
    """Copy the files git knows (committed or not) except tests, docs and reports (the shipped models
    stay: train.init_from names one); commit them in a new repo."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if name.startswith(SKIP) or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "checkout"]):
        subprocess.run(args, cwd=dest, env=env, check=True, capture_output=True)
    return dest


@pytest.fixture
def checkout(tmp_path) -> tuple[Path, dict[str, str]]:
    """(a fresh texpress checkout, its environment) in tmp_path, with PREFECT_HOME of its own."""
    env = isolated_dvc_env(tmp_path, PREFECT_HOME=str(tmp_path / "prefect-home"),
                           PYTHONPATH=str(tmp_path / "repo" / "src"))
    repo = tmp_path / "repo"
    repo.mkdir()
    return make_checkout(repo, env), env
