"""A real Prefect stack for the tests: `prefect server start` on 127.0.0.1 and a free port with its
own PREFECT_HOME, the deployments of prefect.yaml, a process worker, and the REST calls the UI makes."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from ..servers import free_port, start, stop

PREFECT = [sys.executable, "-m", "prefect"]
POOL = "texpress-process"  # prefect.yaml's work pool
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RETRIED = {429, 502, 503}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@contextmanager
def prefect_stack(repo: Path, env: dict[str, str], logs: Path) -> Iterator["Api"]:
    """Server, work pool, `prefect deploy --all` from repo, and a worker; stopped on exit."""
    port = free_port()
    env = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start(PREFECT + ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           logs / "server.log", cwd=repo, env=env))
        api = Api(env["PREFECT_API_URL"])
        api.wait_healthy(procs[0], logs / "server.log")
        run(PREFECT + ["work-pool", "create", POOL, "--type", "process", "--overwrite"], repo, env)
        run(PREFECT + ["--no-prompt", "deploy", "--all"], repo, env)
        procs.append(start(PREFECT + ["worker", "start", "--pool", POOL], logs / "worker.log", cwd=repo, env=env))
        yield api
    finally:
        for proc in reversed(procs):
            stop(proc)


class Api:
    """The Prefect REST API, called as the UI calls it."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def wait_healthy(self, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert server.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise AssertionError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, tries: int = 6) -> Any:
        """One call, retried as Prefect's own client retries: a busy server answers 503 (its SQLite
        database locked) or 429, and a connection may drop."""
        for attempt in range(tries):
            try:
                r = self.http.request(method, path, json=body)
                if r.status_code not in RETRIED or attempt == tries - 1:
                    break
            except httpx.TransportError:
                if attempt == tries - 1:
                    raise
            time.sleep(2**attempt)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})

    def deployments(self) -> list[dict[str, Any]]:
        return self.post("/deployments/filter")

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """What the UI's Run > Custom run does: a flow run of the deployment with these parameters."""
        deployment = next(d for d in self.deployments() if d["name"] == name)
        return self.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})["id"]

    def wait(self, flow_run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/flow_runs/{flow_run_id}")
            if run["state_type"] in FINAL:
                return run
            time.sleep(2)
        raise AssertionError(f"flow run {flow_run_id} not finished after {timeout} s: {run['state_type']}")

    def logs(self, flow_run_id: str) -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        return [entry["message"] for entry in self.post("/logs/filter", body)]

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        return self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})

    def artifact(self, key: str) -> dict[str, Any]:
        found = self.post("/artifacts/latest/filter", {"artifacts": {"key": {"any_": [key]}}})
        assert found, f"no artifact {key!r}"
        return found[0]
