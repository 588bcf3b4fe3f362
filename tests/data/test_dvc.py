"""The project's `prepare` and `shard` stages in a real DVC repo: repro, no-op repro, push, pull in a clone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import isolated_dvc_env
from .conftest import tree_files

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("prepare", "shard")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.mark.heavy
def test_repro_push_and_pull_in_a_fresh_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    bindir = Path(sys.executable).parent
    env = isolated_dvc_env(tmp_path)
    dvc = [str(bindir / "dvc")]
    repo = tmp_path / "repo"
    repo.mkdir()

    # the project's own stage definitions, params and remote configuration, nothing else
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in STAGES}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    for stage in pipeline["stages"].values():
        for dep in stage["deps"]:  # the code: files and package folders
            src, dst = ROOT / dep, repo / dep
            if src.is_file() or (src.is_dir() and not dst.exists() and dep.startswith("src/")):
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
                 else shutil.copy(src, dst))
    _run(["git", "init", "-q"], repo, env)
    _run(dvc + ["init", "-q"], repo, env)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    remote = tmp_path / "dvc-remote"  # the default remote, ../../dvc-remote from .dvc/config: beside the checkout
    assert _run(dvc + ["remote", "list"], repo, env).split()[:2] == ["local", str(remote)]

    _run(dvc + ["repro"], repo, env)
    manifest = json.loads((repo / "data/shards/manifest.json").read_text())
    assert manifest["accepted"] == 11 and all(manifest["splits"][s] >= 1 for s in ("train", "val", "test"))
    assert manifest["sources"] == ["data/raw"]
    shards = tree_files(repo / "data/shards")

    again = _run(dvc + ["repro"], repo, env)
    assert "Data and pipelines are up to date" in again and "Running stage" not in again

    _run(dvc + ["push"], repo, env)
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-q", "-m", "pipeline"], repo, env)

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not (clone / "data/shards").exists() and not (clone / "data/raw").exists()
    _run(dvc + ["pull"], clone, env)
    assert tree_files(clone / "data/shards") == shards
    status = _run(dvc + ["status"], clone, env)
    assert "up to date" in status
