"""The local stack: an S3 server (moto), MLflow, Prefect (server, process work pool, worker) and a
Ray head as real processes on 127.0.0.1, so the CLI, DVC and flows run against the same kinds of
services as on a cluster (docs/deploy.md).

    python infra/local/stack.py up|down|status      (infra/local/stack.sh wraps it)

Everything lives under one state folder ($TEXPRESS_STACK_DIR, default ./.stack): one data folder per
service, a pid file and a log per process, `stack.json` (ports, buckets, credentials) and `stack.env`,
the environment to `source`. Each process is started in its own session, so `down` stops exactly
the process groups that `up` started (checked against the start time in the pid file) and nothing
else. Ports come from TEXPRESS_STACK_*_PORT, or free ones with TEXPRESS_STACK_FREE_PORTS=1; a port
already taken stops `up` before anything starts.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
REGION = "us-east-1"
# service -> (port variable, default port); ray_client is the Ray Client server (ray://)
PORTS = {"s3": ("TEXPRESS_STACK_S3_PORT", 9000), "mlflow": ("TEXPRESS_STACK_MLFLOW_PORT", 5000),
         "prefect": ("TEXPRESS_STACK_PREFECT_PORT", 4200), "ray": ("TEXPRESS_STACK_RAY_PORT", 6379),
         "ray_client": ("TEXPRESS_STACK_RAY_CLIENT_PORT", 10001)}
# Ray's other listeners: fixed defaults in Ray (52365, ...) that a second Ray on the machine also
# wants; they get free ports in test mode
RAY_EXTRA_PORTS = ("dashboard-port", "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                   "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
PROCESSES = ("s3", "mlflow", "prefect", "prefect-worker", "ray")  # start order; stopped in reverse
STOP_TIMEOUT_S = 20.0


class StackError(Exception):
    """A one-line reason why the stack cannot do what was asked."""


@dataclass
class Settings:
    state: Path
    free_ports: bool
    ray_cpus: int
    ray_object_store_bytes: int | None
    buckets: tuple[str, ...]
    pool: str
    start_timeout_s: float

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        store = number("TEXPRESS_STACK_RAY_OBJECT_STORE_MB", 0)
        return cls(state=Path(env.get("TEXPRESS_STACK_DIR", ".stack")).resolve(),
                   free_ports=env.get("TEXPRESS_STACK_FREE_PORTS", "0").lower() in ("1", "true", "yes"),
                   ray_cpus=int(number("TEXPRESS_STACK_RAY_CPUS", os.cpu_count() or 1)),
                   ray_object_store_bytes=int(store * 1024 * 1024) or None,
                   buckets=tuple(env.get("TEXPRESS_STACK_BUCKETS", "texpress-dvc texpress-data").split()),
                   pool=env.get("TEXPRESS_STACK_POOL", "texpress-process"),
                   start_timeout_s=number("TEXPRESS_STACK_START_TIMEOUT", 180))


def number(var: str, default: float) -> float:
    text = os.environ.get(var)
    try:
        return float(text) if text else default
    except ValueError:
        raise StackError(f"{var} must be a number, got {text!r}") from None


# ---------------------------------------------------------------- ports and processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    with socket.socket() as s:  # a listener on 0.0.0.0 or another address of this host
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def choose_ports(free: bool) -> dict[str, int]:
    """Service ports (checked free, distinct); in free mode also Ray's extra listeners."""
    ports: dict[str, int] = {}
    for name, (var, default) in PORTS.items():
        ports[name] = free_port() if free else int(number(var, default))
    if free:
        ports.update({f"ray_{k}": free_port() for k in RAY_EXTRA_PORTS})
    if len(set(ports.values())) != len(ports):
        raise StackError(f"two services were given the same port: {ports}")
    for name, port in ports.items():
        if port_taken(port):
            raise StackError(f"port {port} ({name}) on {HOST} is already in use; set "
                             f"{PORTS.get(name, ('TEXPRESS_STACK_FREE_PORTS=1',))[0]} to another port")
    return ports


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (None when there is no such pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, to tell it from a reused pid."""
    stat = _stat(pid)
    return stat[19] if stat else None


def group_alive(pgid: int) -> bool:
    """Some process of group pgid still runs (zombies, which nobody may reap here, do not count)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat and stat[2] == str(pgid) and stat[0] != "Z":
                return True
    return False


def spawn(name: str, cmd: list[str], env: dict[str, str], settings: Settings, folder: str) -> int:
    """Starts cmd in state/FOLDER, in its own session (its pid is the group id), output to logs/NAME.log."""
    logs = settings.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=settings.state / folder, start_new_session=True)
    pid_file = settings.state / "run" / f"{name}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid} {_start_ticks(proc.pid)}\n")
    return proc.pid


def recorded_pid(settings: Settings, name: str) -> int | None:
    """The pid `up` recorded for `name`, if that process (not a reused pid) or its group still runs."""
    pid_file = settings.state / "run" / f"{name}.pid"
    try:
        pid_text, ticks = pid_file.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    current = _start_ticks(pid)
    if current is not None and current != ticks:
        return None
    return pid if group_alive(pid) else None


def _leader_alive(pid: int) -> bool:
    try:  # reap it when this process started it (an `up` that failed half-way)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def stop(settings: Settings, name: str) -> bool:
    """Stops the process group `up` started for `name`: SIGTERM to its leader (`ray start --block`
    and the servers shut their children down in order), then SIGTERM and SIGKILL to what is left."""
    pid = recorded_pid(settings, name)
    pid_file = settings.state / "run" / f"{name}.pid"
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    gone = lambda: not _leader_alive(pid) and not group_alive(pid)  # noqa: E731
    if not _wait(lambda: not _leader_alive(pid), STOP_TIMEOUT_S) or not _wait(gone, 3.0):
        for sig, seconds in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if _wait(gone, seconds):
                break
    pid_file.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------- health

def http_ok(url: str, timeout: float = 3.0, contains: tuple[str, ...] = ()) -> bool:
    """GET url answers 2xx (and its body holds every string of `contains`)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read().decode(errors="replace") if contains else ""
            return 200 <= r.status < 300 and all(c in body for c in contains)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def s3_ok(info: dict, with_buckets: bool = True) -> bool:
    """The S3 API lists the buckets (ListBuckets on the endpoint's root; moto checks no signature)."""
    names = tuple(f"<Name>{b}</Name>" for b in info["buckets"]) if with_buckets else ()
    return http_ok(f"http://{HOST}:{info['ports']['s3']}/", contains=names)


def tcp_ok(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def prefect_workers(api_url: str, pool: str) -> list[dict]:
    req = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return []


def health(info: dict) -> dict[str, bool]:
    """service -> healthy, from each service's own health endpoint."""
    p = info["ports"]
    api = f"http://{HOST}:{p['prefect']}/api"
    return {
        "s3": s3_ok(info),
        "mlflow": http_ok(f"http://{HOST}:{p['mlflow']}/health"),
        "prefect": http_ok(f"{api}/health"),
        "prefect-worker": any(w.get("status") == "ONLINE" for w in prefect_workers(api, info["pool"])),
        "ray": tcp_ok(p["ray"]),
    }


def wait_until(check, what: str, pid: int, settings: Settings, log_name: str) -> None:
    log = settings.state / "logs" / f"{log_name}.log"
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not group_alive(pid):
            raise StackError(f"{what} exited during start-up; see {log}")
        time.sleep(0.5)
    raise StackError(f"{what} not healthy after {settings.start_timeout_s:.0f} s; see {log}")


# ---------------------------------------------------------------- the services

def tool(name: str) -> str:
    """A console script of this Python's environment, else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} is not installed (bash infra/local/setup.sh installs it)")
    return found


def client_env(info: dict) -> dict[str, str]:
    """What the CLI, DVC, boto3/s3fs, MLflow, Prefect and Ray clients need to use the stack."""
    p, s3 = info["ports"], f"http://{HOST}:{info['ports']['s3']}"
    return {
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{p['mlflow']}",
        "PREFECT_API_URL": f"http://{HOST}:{p['prefect']}/api",
        "RAY_ADDRESS": f"{HOST}:{p['ray']}",
        "TEXPRESS_RAY_CLIENT_ADDRESS": f"ray://{HOST}:{p['ray_client']}",
        "TEXPRESS_S3_ENDPOINT_URL": s3,
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": info["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": info["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "TEXPRESS_DVC_REMOTE_URL": f"s3://{info['buckets'][0]}/dvc",
        "TEXPRESS_BULK_URL": f"s3://{info['buckets'][-1]}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Ray's GCS and raylet listen on every interface (Ray has no loopback-only mode): token auth
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": info["ray_auth_token"],
    }


def service_env(info: dict, **extra: str) -> dict[str, str]:
    env = {**os.environ, **client_env(info), "DVC_NO_ANALYTICS": "1", **extra}
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(k, None)
    return env


def start_s3(settings: Settings, info: dict) -> None:
    port = info["ports"]["s3"]
    (settings.state / "s3").mkdir(exist_ok=True)
    pid = spawn("s3", [tool("moto_server"), "-H", HOST, "-p", str(port)], service_env(info), settings, "s3")
    wait_until(lambda: s3_ok(info, with_buckets=False), "s3 (moto)", pid, settings, "s3")
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{HOST}:{port}", region_name=REGION,
                          aws_access_key_id=info["aws_access_key_id"],
                          aws_secret_access_key=info["aws_secret_access_key"])
    for bucket in info["buckets"]:
        client.create_bucket(Bucket=bucket)


def start_mlflow(settings: Settings, info: dict) -> None:
    port, data = info["ports"]["mlflow"], settings.state / "mlflow"
    (data / "artifacts").mkdir(parents=True, exist_ok=True)
    cmd = [tool("mlflow"), "server", "--host", HOST, "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
           "--serve-artifacts", "--artifacts-destination", str(data / "artifacts")]
    pid = spawn("mlflow", cmd, service_env(info), settings, "mlflow")
    wait_until(lambda: http_ok(f"http://{HOST}:{port}/health"), "mlflow", pid, settings, "mlflow")


def prefect_env(settings: Settings, info: dict) -> dict[str, str]:
    return service_env(info, PREFECT_HOME=str(settings.state / "prefect"))


def start_prefect(settings: Settings, info: dict) -> None:
    port = info["ports"]["prefect"]
    (settings.state / "prefect").mkdir(exist_ok=True)
    env = prefect_env(settings, info)
    env.pop("PREFECT_API_URL")  # the server itself
    cmd = [tool("prefect"), "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
    pid = spawn("prefect", cmd, env, settings, "prefect")
    wait_until(lambda: http_ok(f"http://{HOST}:{port}/api/health"), "prefect server", pid, settings, "prefect")


def start_prefect_worker(settings: Settings, info: dict) -> None:
    env, pool = prefect_env(settings, info), info["pool"]
    made = subprocess.run([tool("prefect"), "work-pool", "create", pool, "--type", "process", "--overwrite"],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if made.returncode != 0:
        raise StackError(f"prefect work-pool create {pool} failed: {(made.stderr or made.stdout).strip()[-300:]}")
    cmd = [tool("prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", "texpress-local"]
    pid = spawn("prefect-worker", cmd, env, settings, "prefect")
    api = client_env(info)["PREFECT_API_URL"]
    wait_until(lambda: any(w.get("status") == "ONLINE" for w in prefect_workers(api, pool)), "prefect worker",
               pid, settings, "prefect-worker")


def ray_temp_dir(settings: Settings) -> Path:
    """state/ray, or a short folder in /tmp linked from there: Ray's socket paths must stay short."""
    link = settings.state / "ray"
    if len(str(link)) <= 40:
        link.mkdir(exist_ok=True)
        return link
    if not link.is_symlink():
        short = Path(f"/tmp/txr-{secrets.token_hex(4)}")
        short.mkdir(mode=0o700)
        link.symlink_to(short)
    return link.resolve()


def start_ray(settings: Settings, info: dict) -> None:
    p = info["ports"]
    cmd = [tool("ray"), "start", "--head", "--block", "--node-ip-address", HOST, "--port", str(p["ray"]),
           "--ray-client-server-port", str(p["ray_client"]), "--num-cpus", str(settings.ray_cpus),
           "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(ray_temp_dir(settings))]
    cmd += [f"--{k}={p[f'ray_{k}']}" for k in RAY_EXTRA_PORTS if f"ray_{k}" in p]
    if settings.ray_object_store_bytes:
        cmd += ["--object-store-memory", str(settings.ray_object_store_bytes)]
    # Ray turns 127.0.0.1 into the host's address for its node and binds its GCS and raylet to every
    # interface (hence token auth); the Ray workers inherit this environment (MLflow, S3, credentials)
    pid = spawn("ray", cmd, service_env(info, RAY_USAGE_STATS_ENABLED="0"), settings, "ray")
    wait_until(lambda: tcp_ok(p["ray"]) and _ray_node_ready(settings), "ray head", pid, settings, "ray")


def _ray_node_ready(settings: Settings) -> bool:
    """The raylet has written its session (the head's GCS answers and the node registered)."""
    return (ray_temp_dir(settings) / "session_latest" / "logs" / "raylet.out").exists()


STARTERS = {"s3": start_s3, "mlflow": start_mlflow, "prefect": start_prefect,
            "prefect-worker": start_prefect_worker, "ray": start_ray}


# ---------------------------------------------------------------- commands

def read_info(settings: Settings) -> dict | None:
    try:
        return json.loads((settings.state / "stack.json").read_text())
    except (OSError, ValueError):
        return None


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def env_file_text(info: dict) -> str:
    lines = ["# written by infra/local/stack.sh up; `source` it (credentials are this stack's own)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in client_env(info).items()]
    return "\n".join(lines) + "\n"


def up(settings: Settings) -> dict:
    if any(recorded_pid(settings, name) for name in PROCESSES):
        raise StackError(f"a stack is already running from {settings.state}; `stack.sh down` first")
    ports = choose_ports(settings.free_ports)
    settings.state.mkdir(parents=True, exist_ok=True)
    info = {"state": str(settings.state), "ports": ports, "pool": settings.pool, "buckets": list(settings.buckets),
            "aws_access_key_id": f"texpress-{secrets.token_hex(6)}",
            "aws_secret_access_key": secrets.token_urlsafe(30), "ray_auth_token": secrets.token_hex(32)}
    write_private(settings.state / "stack.json", json.dumps(info, indent=1) + "\n")
    write_private(settings.state / "stack.env", env_file_text(info))
    try:
        for name in PROCESSES:
            print(f"starting {name} ...", file=sys.stderr, flush=True)
            STARTERS[name](settings, info)
    except BaseException:
        down(settings)
        raise
    return info


def _ancestors() -> set[int]:
    """This process and those above it (a shell whose working folder is in the state folder)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        stat = _stat(pid)
        pid = int(stat[1]) if stat else 0
    return pids


def stragglers(settings: Settings) -> list[int]:
    """Live processes that run in the state folder or name it (or Ray's folder) on their command line:
    children that left their service's process group (a daemonised helper) or were spawned while it
    was stopping."""
    roots = {str(settings.state.resolve())}
    if (settings.state / "ray").is_symlink():
        roots.add(str((settings.state / "ray").resolve()))
    found, spared = [], _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if any(root in cmdline or cwd == root or cwd.startswith(f"{root}/") for root in roots):
            stat = _stat(entry.name)
            if stat and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


def _stop_stragglers(settings: Settings) -> None:
    left = stragglers(settings)
    if left:
        names = ", ".join(f"{pid} ({_command_name(pid)})" for pid in left)
        print(f"stopping {len(left)} process(es) left behind by the services: {names}", file=sys.stderr, flush=True)
    for sig, seconds in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        left = stragglers(settings)
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not left or _wait(lambda: not stragglers(settings), seconds):
            return


def down(settings: Settings) -> list[str]:
    stopped = [name for name in reversed(PROCESSES) if stop(settings, name)]
    if stopped:
        _stop_stragglers(settings)
    ray = settings.state / "ray"
    if ray.is_symlink():  # the short Ray folder in /tmp belongs to this stack
        shutil.rmtree(ray.resolve(), ignore_errors=True)
        ray.unlink()
    return stopped


def status(settings: Settings) -> tuple[bool, list[str]]:
    info = read_info(settings)
    if info is None:
        return False, [f"no stack in {settings.state}"]
    ok, lines = health(info), []
    endpoints = {"s3": f"http://{HOST}:{info['ports']['s3']}", "mlflow": client_env(info)["MLFLOW_TRACKING_URI"],
                 "prefect": client_env(info)["PREFECT_API_URL"], "prefect-worker": f"pool {info['pool']}",
                 "ray": client_env(info)["RAY_ADDRESS"]}
    for name in PROCESSES:
        pid = recorded_pid(settings, name)
        state = "healthy" if pid and ok[name] else ("unhealthy" if pid else "stopped")
        lines.append(f"{name:15} {state:9} pid {pid or '-':<8} {endpoints[name]}")
    return all(recorded_pid(settings, n) and ok[n] for n in PROCESSES), lines


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("up", "down", "status"):
        print("usage: stack.sh up|down|status   (state: $TEXPRESS_STACK_DIR, default ./.stack)", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        if argv[0] == "up":
            up(settings)
            _, lines = status(settings)
            print("\n".join(lines))
            print(f"stack up; environment: source {settings.state / 'stack.env'}")
            return 0
        if argv[0] == "down":
            stopped = down(settings)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            return 0
        healthy, lines = status(settings)
        print("\n".join(lines))
        return 0 if healthy else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
