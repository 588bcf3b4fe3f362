"""The lock file: every install path reads it, and it agrees with pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "infra/lock/dev.txt"


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version ; marker` line of an exported requirements file whose
    marker holds on this interpreter."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)(?: ; ([^\\]+))?", line)
        if m and (m.group(3) is None or Marker(m.group(3).strip()).evaluate()):
            out[canonical(m.group(1))] = m.group(2)
    return out


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_matches_pyproject():
    """uv re-resolves pyproject.toml against uv.lock and diffs the exported requirement files: a
    dependency changed without `bash infra/lock.sh` fails here (needs PyPI, as the install does)."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists() and not shutil.which("uv"):
        pytest.skip("uv is not installed (test extra)")
    env = {"UV": str(uv if uv.exists() else shutil.which("uv")), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["bash", "infra/lock.sh", "--check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_lock_line_has_hashes():
    text = DEV.read_text()
    entries = re.findall(r"^[A-Za-z0-9_.\-]+==\S+.*?(?=^\S|\Z)", text, flags=re.M | re.S)
    assert entries and all("--hash=sha256:" in e for e in entries)


def test_this_environment_is_the_locked_one():
    """The venv running the tests holds exactly the locked versions (setup.sh installs from the lock)."""
    wrong = {}
    for name, version in pins(DEV).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, None)
            continue
        if installed.split("+")[0] != version:
            wrong[name] = (version, installed)
    assert not wrong, wrong


def test_every_install_path_reads_the_lock():
    setup = (ROOT / "infra/local/setup.sh").read_text()
    assert "--require-hashes" in setup and "infra/lock/dev.txt" in setup
    assert "infra/local/setup.sh" in (ROOT / ".ci/run").read_text()
    docker = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in docker and "infra/lock/cluster.txt" in docker
    locked = pins(DEV)
    for name in ("torch", "torchvision"):  # the image takes these two from a PyTorch index
        arg = re.search(rf"ARG {name.upper()}_VERSION=(\S+)", docker)
        assert arg and arg.group(1) == locked[name], name


def test_extras_are_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev, cluster = pins(DEV), pins(ROOT / "infra/lock/cluster.txt")
    for dep in project["optional-dependencies"]["test"]:
        assert canonical(re.split(r"[<>=\[ ;]", dep)[0]) in dev, dep
    for dep in project["optional-dependencies"]["cluster"]:
        assert canonical(re.split(r"[<>=\[ ;]", dep)[0]) in cluster, dep
    assert "torch" not in cluster and "ray" in cluster
