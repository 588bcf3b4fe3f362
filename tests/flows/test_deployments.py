"""The deployments of prefect.yaml on a real Prefect server and worker, run through the REST API as
the UI runs them: ingest and train end COMPLETED with their outputs, a bad source ends FAILED with
its reason and visible retries, and the UI's deployments page shows the texpress deployments."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from ..conftest import isolated_dvc_env
from .conftest import ROOT, make_checkout
from .server import POOL, prefect_stack

pytestmark = pytest.mark.heavy
FLOWS = ("ingest", "train", "promote", "bulk-compress", "bulk-decompress", "nightly")

# a few steps of the lite model on 1 Ray worker, evaluated against JPEG on one cropped test image
TINY_TRAIN = {"preset": "lite", "rd_steps": 4, "gan_steps": 2, "workers": 1, "patch_size": 64, "batch_size": 2,
              "extra_params": {"train.val_every": 3, "train.checkpoint_every": 3, "train.log_every": 2,
                               "train.val_images": 2, "train.grid_images": 1, "loader.batches_per_epoch": 10,
                               "loader.num_workers": 0, "loader.val_max_side": 128, "evaluate.baselines": ["jpeg"],
                               "evaluate.crop": [128, 128], "evaluate.max_images": 1}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flows")
    repo = tmp / "repo"
    repo.mkdir()
    env = isolated_dvc_env(tmp, PREFECT_HOME=str(tmp / "prefect-home"), PYTHONPATH=str(repo / "src"))
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):  # everything stays in tmp
        env.pop(name, None)
    make_checkout(repo, env)
    with prefect_stack(repo, env, tmp) as api:
        yield api, repo, env


def test_deploy_all_creates_the_deployments_of_prefect_yaml(stack):
    api, _, _ = stack
    deployments = {d["name"]: d for d in api.deployments()}
    assert set(deployments) == {f"texpress-{name}" for name in FLOWS}
    for d in deployments.values():
        assert d["work_pool_name"] == POOL and "texpress" in d["tags"]
        assert d["parameter_openapi_schema"]["properties"]["params"]  # the typed form the UI renders
    assert deployments["texpress-ingest"]["parameters"]["params"]["sources"] == ["samples"]
    (nightly,) = deployments["texpress-nightly"]["schedules"]
    assert nightly["schedule"]["cron"] == "0 2 * * *" and nightly["active"] is False  # paused until turned on
    assert not any(d["schedules"] for name, d in deployments.items() if name != "texpress-nightly")


def test_ingest_then_train_from_the_api(stack):
    api, repo, env = stack
    run = api.wait(api.run_deployment("texpress-ingest", {"params": {"sources": ["samples"]}}), timeout=300)
    assert run["state_type"] == "COMPLETED", api.logs(run["id"])[-20:]
    manifest = json.loads((repo / "data/shards/manifest.json").read_text())
    assert manifest["accepted"] == 11 and sorted(manifest["splits"]) == ["test", "train", "val"]
    assert list((repo / "data/shards/train").glob("shard-*.tar"))
    assert any((repo.parent / "dvc-remote").rglob("*")), "the data version was not pushed"
    assert "| accepted | 11 |" in api.artifact("ingest")["data"]

    run = api.wait(api.run_deployment("texpress-train", {"params": TINY_TRAIN}), timeout=600)
    assert run["state_type"] == "COMPLETED", api.logs(run["id"])[-20:]
    metrics = {**json.loads((repo / "models/train_metrics.json").read_text()),
               **json.loads((repo / "models/run.json").read_text())}  # the run id is kept out of the metrics
    assert (repo / "models/model.ckpt").is_file() and metrics["steps"] == 6
    assert (repo / "reports/eval/metrics.json").is_file()
    with sqlite3.connect(repo / "mlflow.db") as db:
        status = db.execute("select status from runs where run_uuid = ?", (metrics["mlflow_run_id"],)).fetchone()
    assert status == ("FINISHED",)
    report = api.artifact("train")["data"]
    assert metrics["mlflow_run_id"] in report and metrics["model_fingerprint"] in report
    with sqlite3.connect(repo / "mlflow.db") as db:
        versions = db.execute("select name, version, run_id from model_versions order by name").fetchall()
    assert versions[0] == ("texpress-lite", 1, metrics["mlflow_run_id"])
    assert [v[:2] for v in versions] == [("texpress-lite", 1), ("texpress-lite-slim", 1)]  # the slim stage's variant
    assert "models:/texpress-lite/1" in report
    # the UI run left params.yaml and dvc.lock as `dvc repro` would: nothing left to reproduce
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "train", "evaluate"], cwd=repo, env=env,
                            capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout + status.stderr


def test_nightly_then_bulk_decompress_from_the_api(stack):
    """After ingest and train: nightly re-uses both (DVC skips, the train task's cache hits), runs the
    gate on the trained version and compresses the gathered photos; then the store is restored."""
    api, repo, _ = stack
    nightly = {"train": TINY_TRAIN, "promote": {"max_images": 1}}
    run = api.wait(api.run_deployment("texpress-nightly", {"params": nightly}), timeout=600)
    assert run["state_type"] == "COMPLETED", api.logs(run["id"])[-20:]
    trainings = [t for t in api.post("/task_runs/filter", {}) if t["name"].startswith("repro_train")]
    assert any(t["state_name"] == "Cached" for t in trainings)  # same data version, params and code
    with sqlite3.connect(repo / "mlflow.db") as db:
        assert db.execute("select count(*) from model_versions where name = 'texpress-lite'").fetchone() == (1,)  # the same version, judged
        aliases = dict(db.execute("select alias, version from registered_model_aliases").fetchall())
    assert aliases.get("champion") == 1 or aliases.get("challenger") == 1
    compressed = json.loads((repo / "reports/bulk/tpx/report.json").read_text())
    assert compressed["done"] == 11 and compressed["failed"] == 0
    assert len(list((repo / "reports/bulk/tpx").rglob("*.tpx"))) == 11
    assert "| promoted |" in api.artifact("promote")["data"]
    assert "| store images coded | 11 |" in api.artifact("nightly")["data"]

    model = "models:/texpress-lite@champion" if aliases.get("champion") else "models:/texpress-lite/1"
    run = api.wait(api.run_deployment("texpress-bulk-decompress", {"params": {"model": model}}), timeout=300)
    assert run["state_type"] == "COMPLETED", api.logs(run["id"])[-20:]
    assert len(list((repo / "reports/bulk/png").rglob("*.png"))) == 11


def test_unreachable_source_fails_with_its_reason_after_retries(stack):
    api, repo, _ = stack
    missing = str(repo.parent / "no-such-folder")
    run = api.wait(api.run_deployment("texpress-ingest", {"params": {"sources": [missing]}}), timeout=300)
    assert run["state_type"] == "FAILED"
    assert f"{missing}: source not found or not reachable" in run["state"]["message"]
    logs = api.logs(run["id"])
    assert sum("Retry" in line and "will start" in line for line in logs) == 3, logs
    check = next(t for t in api.task_runs(run["id"]) if t["name"].startswith("check_source"))
    assert check["run_count"] == 4 and check["state_type"] == "FAILED"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (infra/local/setup.sh)")
def test_ui_deployments_page_shows_the_texpress_deployments(stack, tmp_path):
    api, _, _ = stack
    page = api.url.removesuffix("/api") + "/deployments"
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--window-size=1440,900", "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run(chromium + ["--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    for name in FLOWS:
        assert f"texpress-{name}" in dom
    shot = tmp_path / "prefect-deployments.png"
    subprocess.run(chromium + [f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("TEXPRESS_UPDATE_SCREENSHOT"):  # refresh the picture in docs/flows.md
        (ROOT / "docs/img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs/img/prefect-deployments.png")
