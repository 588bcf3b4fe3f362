"""Starting and stopping the real servers the tests use (Prefect, MLflow, `mlflow models serve`): a free
port on 127.0.0.1, a process group with its output in a log file, and a stop that takes the children too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server in a process group of its own, stdout and stderr to `log`, this venv's bin first on PATH
    (`mlflow models serve` execs `uvicorn` by name); `env` is added to this process's environment."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with Path(log).open("wb") as out:
        return subprocess.Popen(args, cwd=cwd, env={**os.environ, "PATH": path, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def log_tail(log: Path, chars: int = 2000) -> str:
    try:
        return Path(log).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (the server's children too), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
