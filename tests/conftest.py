"""Shared test set-up: quiet third-party warnings, keep services' state out of the home folder."""

import os
import warnings

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
warnings.filterwarnings("ignore", category=FutureWarning)


def isolated_dvc_env(tmp_path, **extra: str) -> dict[str, str]:
    """Environment for running this venv's git and dvc in a temporary repo: DVC's site, global and
    system config kept under tmp_path, no user git config, a fixed git identity."""
    import sys
    from pathlib import Path

    bindir = Path(sys.executable).parent
    return {**os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
            "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
            "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system"),
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **extra}


@pytest.fixture(scope="session")
def lite_ckpt(tmp_path_factory):
    """An untrained lite checkpoint (seed 0), shared by every test folder that only needs one."""
    from texpress.codec.checkpoint import build_model, save_checkpoint
    from texpress.codec.config import get_preset

    path = tmp_path_factory.mktemp("models") / "lite.ckpt"
    save_checkpoint(build_model(get_preset("lite"), seed=0), path)
    return path


@pytest.fixture(scope="session")
def codec(lite_ckpt):
    from texpress.codec.api import Codec

    return Codec.from_checkpoint(lite_ckpt)
