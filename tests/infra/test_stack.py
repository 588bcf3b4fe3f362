"""infra/local/stack.sh: the real services on 127.0.0.1, one tiny training through all of them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import isolated_dvc_env
from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "local" / "stack.sh"
PORT_VARS = ("TEXPRESS_STACK_S3_PORT", "TEXPRESS_STACK_MLFLOW_PORT", "TEXPRESS_STACK_PREFECT_PORT",
             "TEXPRESS_STACK_RAY_PORT", "TEXPRESS_STACK_RAY_CLIENT_PORT")


def stack(cmd: str, env: dict[str, str], timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(STACK), cmd], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of `export NAME=VALUE` lines, values as the shell reads them."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            out[k] = " ".join(shlex.split(v))
    return out


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid} (gone)"


def processes_of(state: Path) -> list[int]:
    """Pids that run in the stack's state folder or name it on their command line (every service
    starts in its own folder there; Ray's processes name their session folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if str(state) in cmdline or cwd == str(state) or cwd.startswith(f"{state}/"):
                found.append(int(proc.name))
    return found


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path):
    state = tmp_path / "state"
    ports = {var: str(free_port()) for var in PORT_VARS}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports["TEXPRESS_STACK_MLFLOW_PORT"] = str(taken.getsockname()[1])
        env = {**os.environ, **ports, "TEXPRESS_STACK_DIR": str(state), "PYTHON": sys.executable}
        r = stack("up", env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: port {ports['TEXPRESS_STACK_MLFLOW_PORT']} (mlflow) on 127.0.0.1 is already in use; "
        "set TEXPRESS_STACK_MLFLOW_PORT to another port"]
    assert not state.exists() and not processes_of(state)
    r = stack("status", env, timeout=120)
    assert r.returncode == 1 and r.stdout.strip() == f"no stack in {state}"
    assert stack("down", env, timeout=120).stdout.strip() == "stopped: nothing was running"


def start_ticks(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def test_down_stops_only_the_processes_up_recorded(tmp_path):
    """A pid file whose process was replaced (same pid, another start time) is left alone; a recorded
    process group is stopped, children included."""
    run_dir = tmp_path / "state" / "run"
    run_dir.mkdir(parents=True)
    ours = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    try:
        (run_dir / "s3.pid").write_text(f"{ours.pid} {start_ticks(ours.pid)}\n")
        (run_dir / "ray.pid").write_text(f"{os.getpid()} 1\n")  # this pid now belongs to the test itself
        env = {**os.environ, "TEXPRESS_STACK_DIR": str(tmp_path / "state"), "PYTHON": sys.executable}
        r = stack("down", env, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "stopped: s3"
        assert ours.wait(timeout=30) != 0
        group = subprocess.run(["ps", "-o", "stat=", "-g", str(ours.pid)], capture_output=True, text=True).stdout
        assert [st for st in group.split() if not st.startswith("Z")] == []  # zombies wait for init to reap them
        assert not list(run_dir.iterdir())
    finally:
        if ours.poll() is None:
            os.killpg(ours.pid, 9)
            ours.wait()


TINY_PARAMS = """\
train: {preset: lite, rd_steps: 3, gan_steps: 1, workers: 1, cpus_per_worker: 1, checkpoint_every: 4,
        val_every: 4, log_every: 2, val_images: 1, grid_images: 1, experiment: stack-e2e}
loader: {patch_size: 64, batch_size: 2, num_workers: 0, shuffle_buffer: 8, batches_per_epoch: 8, val_max_side: 128}
"""


def make_dataset(repo: Path) -> None:
    from texpress.data.config import ShardConfig
    from texpress.data.ingest import ingest
    from texpress.samples import sample_photos

    photos = sample_photos()
    if len(photos) < 8:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    ingest([str(p) for p in photos], repo / "data" / "shards", ShardConfig(min_side=64, val_frac=0.2, test_frac=0.1))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stored_md5s(env: dict[str, str]) -> set[str]:
    """The content hashes under the stack's DVC remote (DVC stores files by md5, folders as .dir)."""
    import boto3

    bucket, prefix = env["TEXPRESS_DVC_REMOTE_URL"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=env["TEXPRESS_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"].split("/md5/")[1].replace("/", "") for page in pages for o in page.get("Contents", [])}


def push_and_pull(tmp_path: Path, env: dict[str, str]) -> Path:
    """A DVC repo whose shards go to the stack's S3 remote; returns a clone that pulled them back."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    make_dataset(repo)
    run(["dvc", "add", "-q", "data/shards"], repo, env)
    run(["dvc", "remote", "add", "-d", "stack", env["TEXPRESS_DVC_REMOTE_URL"]], repo, env)
    run(["dvc", "push"], repo, env)
    shards = tree(repo / "data" / "shards")
    stored = stored_md5s(env)
    listing = {k for k in stored if k.endswith(".dir")}  # the folder's listing, beside each file's content
    assert len(listing) == 1 and stored - listing == {hashlib.md5(b).hexdigest() for b in shards.values()}
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "shards"], repo, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run(["dvc", "pull"], clone, env)
    assert tree(clone / "data" / "shards") == shards
    return clone


def register_and_code(run_id: str, env: dict[str, str], model_file: Path, work: Path) -> None:
    """`texpress registry register --run-id` into the server's registry; the CLI then codes an image
    with `models:/NAME/VERSION`, fetched from the server."""
    from mlflow.tracking import MlflowClient

    out = run(["texpress", "registry", "register", "--run-id", run_id, "--name", "texpress-stack-e2e"], work, env)
    assert "registered texpress-stack-e2e version 1" in out
    (version,) = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_model_versions("name='texpress-stack-e2e'")
    assert version.run_id == run_id
    pulled = work / "pulled.ckpt"
    run(["texpress", "registry", "pull", "texpress-stack-e2e/1", "-o", str(pulled)], work, env)
    from texpress.codec.checkpoint import read_checkpoint

    assert read_checkpoint(pulled)["fingerprint"] == read_checkpoint(model_file)["fingerprint"]
    image = work / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)).save(image)
    run(["texpress", "compress", str(image), "-o", str(work / "coded"), "--model", "models:/texpress-stack-e2e/1"],
        work, env)
    assert (work / "coded" / "photo.tpx").stat().st_size > 0


def stack_env(tmp_path: Path, state: Path) -> dict[str, str]:
    """The environment of a test stack: free ports, 2 CPUs for Ray, a fast-polling Prefect worker."""
    env = isolated_dvc_env(tmp_path, TEXPRESS_STACK_DIR=str(state), TEXPRESS_STACK_FREE_PORTS="1",
                           TEXPRESS_STACK_RAY_CPUS="2", TEXPRESS_STACK_RAY_OBJECT_STORE_MB="150",
                           PYTHON=sys.executable, PREFECT_HOME=str(tmp_path / "prefect-client"),
                           PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="2")
    for k in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "RAY_ADDRESS", "AWS_PROFILE"):
        env.pop(k, None)
    return env


@pytest.mark.heavy
def test_stack_trains_end_to_end_and_stops_cleanly(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    state = Path(tempfile.mkdtemp(prefix="txs-", dir="/tmp"))  # short: Ray's socket paths
    base = stack_env(tmp_path, state)
    stopped = False
    try:
        r = stack("up", base)
        assert r.returncode == 0, r.stdout + r.stderr
        env = {**base, **read_env_file(state / "stack.env")}
        assert (state / "stack.env").stat().st_mode & 0o077 == 0  # credentials: owner only
        r = stack("status", base)
        assert r.returncode == 0 and r.stdout.count(" healthy ") == 5, r.stdout
        again = stack("up", base)
        assert again.returncode == 1 and "already running" in again.stderr

        clone = push_and_pull(tmp_path, env)
        (tmp_path / "tiny.yaml").write_text(TINY_PARAMS)
        out = tmp_path / "model"
        run(["texpress", "train", "--shards", str(clone / "data" / "shards"), "-o", str(out),
             "--params", str(tmp_path / "tiny.yaml"), "--storage-path", str(tmp_path / "ray_results")],
            tmp_path, env)
        run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]

        # the training ran on the stack's Ray head: its workers logged there
        logs = Path(state / "ray").resolve() / "session_latest" / "logs"
        assert any(run_id in p.read_text(errors="replace") for p in logs.glob("worker-*") if p.is_file())
        # the run is in the MLflow server, its artifacts in the server's own folder
        from mlflow.tracking import MlflowClient

        mlflow_run = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id)
        assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.metrics["train/bpp"] > 0
        served = list((state / "mlflow" / "artifacts").rglob("model.ckpt"))
        assert len(served) == 1 and served[0].read_bytes() == (out / "model.ckpt").read_bytes()
        assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlflow.db").exists()
        register_and_code(run_id, {**env, "TEXPRESS_CACHE_DIR": str(tmp_path / "cache")}, out / "model.ckpt", tmp_path)

        # a service that died is reported, and `down` still stops the others
        worker = int((state / "run" / "prefect-worker.pid").read_text().split()[0])
        os.killpg(worker, signal.SIGKILL)
        r = stack("status", base)
        assert r.returncode == 1 and re.search(r"^prefect-worker +stopped", r.stdout, re.M), r.stdout
        r = stack("down", base)
        stopped = True
        assert r.returncode == 0 and r.stdout.strip() == "stopped: ray, prefect, mlflow, s3"
        assert processes_of(state) == []
        info = json.loads((state / "stack.json").read_text())
        assert not [p for p in info["ports"].values() if listening(p)]
    finally:
        if not stopped:
            stack("down", base)
        shutil.rmtree(state, ignore_errors=True)


# a few steps of the lite model on 1 Ray worker, evaluated against JPEG on one cropped test image
TINY_TRAIN = {"preset": "lite", "rd_steps": 3, "gan_steps": 1, "workers": 1, "patch_size": 64, "batch_size": 2,
              "extra_params": {"train.val_every": 4, "train.checkpoint_every": 4, "train.log_every": 2,
                               "train.val_images": 1, "train.grid_images": 1, "loader.batches_per_epoch": 8,
                               "loader.num_workers": 0, "loader.val_max_side": 128, "evaluate.baselines": ["jpeg"],
                               "evaluate.crop": [128, 128], "evaluate.max_images": 1}}


@pytest.mark.heavy
def test_the_prefect_train_flow_runs_through_the_stack(tmp_path):
    """The project's deployments on the stack's Prefect server, run by its worker: ingest pushes the
    shards to the stack's S3, train runs `dvc repro train evaluate` on the stack's Ray head, logs to
    its MLflow server and registers the model there."""
    if not (ROOT / "flows" / "train.py").is_file() or not (ROOT / "tests" / "flows" / "server.py").is_file():
        pytest.skip("the Prefect flows (flows/, issue 12) are not in this checkout yet")
    from ..flows.conftest import make_checkout
    from ..flows.server import Api

    state = Path(tempfile.mkdtemp(prefix="txs-", dir="/tmp"))
    base = stack_env(tmp_path, state)
    repo = tmp_path / "repo"
    repo.mkdir()
    make_checkout(repo, base)
    try:
        r = stack("up", base)
        assert r.returncode == 0, r.stdout + r.stderr
        env = {**base, **read_env_file(state / "stack.env")}
        run(["dvc", "remote", "add", "-d", "-f", "stack", env["TEXPRESS_DVC_REMOTE_URL"]], repo, env)
        run(["git", "commit", "-q", "-am", "the stack's DVC remote"], repo, env)
        run([sys.executable, "-m", "prefect", "deploy", "--all"], repo, env)
        api = Api(env["PREFECT_API_URL"])
        for name, params, timeout in (("texpress-ingest", {"sources": ["samples"], "push": True}, 900),
                                      ("texpress-train", TINY_TRAIN, 1500)):
            flow_run = api.wait(api.run_deployment(name, {"params": params}), timeout=timeout)
            assert flow_run["state_type"] == "COMPLETED", "\n".join(api.logs(flow_run["id"])[-30:])
        shards = tree(repo / "data" / "shards")
        assert {hashlib.md5(b).hexdigest() for b in shards.values()} <= stored_md5s(env)

        run_id = json.loads((repo / "models" / "run.json").read_text())["mlflow_run_id"]
        logs = Path(state / "ray").resolve() / "session_latest" / "logs"
        assert any(run_id in p.read_text(errors="replace") for p in logs.glob("worker-*") if p.is_file())
        from mlflow.tracking import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        assert client.get_run(run_id).info.status == "FINISHED"
        model = (repo / "models" / "model.ckpt").read_bytes()
        assert model in {p.read_bytes() for p in (state / "mlflow" / "artifacts").rglob("model.ckpt")}
        assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists()
        (version,) = [v for v in client.search_model_versions("name='texpress-lite'") if v.run_id == run_id]
        photo = sorted(p for p in (repo / "data" / "raw").rglob("*") if p.is_file())[0]
        run(["texpress", "compress", str(photo), "-o", str(tmp_path / "coded"), "--model",
             f"models:/texpress-lite/{version.version}"], tmp_path, {**env, "TEXPRESS_CACHE_DIR": str(tmp_path / "c")})
        assert list((tmp_path / "coded").rglob("*.tpx"))
    finally:
        r = stack("down", base)
        shutil.rmtree(state, ignore_errors=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert processes_of(state) == [], [command_line(pid) for pid in processes_of(state)]
