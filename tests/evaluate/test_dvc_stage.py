"""The project's `evaluate` stage in a real DVC repo: repro on a test shard, `dvc metrics show`,
`dvc plots show`, a no-op repro, and the numbers and figures logged to the checkpoint's MLflow run."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from texpress.codec.checkpoint import build_model, save_checkpoint
from texpress.codec.config import get_preset
from texpress.codec.imageio import load_image

from ..conftest import isolated_dvc_env
from .conftest import centre

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    return r


def _copy_dep(dep: str, repo: Path) -> None:
    src, dst = ROOT / dep, repo / dep
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    elif src.is_file():
        shutil.copy(src, dst)


def _write_test_shard(path: Path, photo_by_name) -> None:
    """Two samples the way the shard stage stores them: original PNG bytes plus a json record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name in ("brick", "coffee"):
            buf = io.BytesIO()
            Image.fromarray(centre(load_image(photo_by_name[name]).rgb, 160, 128)).save(buf, "PNG")
            for member, data in ((f"{name}-0000.png", buf.getvalue()),
                                 (f"{name}-0000.json", json.dumps({"key": f"{name}-0000"}).encode())):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.heavy
def test_evaluate_stage_repro_metrics_plots_and_mlflow(tmp_path, photo_by_name):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from mlflow.tracking import MlflowClient

    bindir = Path(sys.executable).parent
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = isolated_dvc_env(tmp_path, MLFLOW_TRACKING_URI=uri)
    env.pop("MLFLOW_RUN_ID", None)
    dvc = [str(bindir / "dvc")]
    repo = tmp_path / "repo"
    repo.mkdir()

    # the project's own evaluate stage; its params section, narrowed to keep the test fast
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = pipeline["stages"]["evaluate"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(baselines=["jpeg", "webp"], qualities={"jpeg": [10, 40, 80], "webp": [10, 40, 80]})
    (repo / "params.yaml").write_text(yaml.safe_dump({"evaluate": params["evaluate"]}, sort_keys=False))
    for dep in stage["deps"]:
        if not dep.startswith(("models/", "data/")):  # the code; the data inputs are made below
            _copy_dep(dep, repo)
    for plot in stage["plots"]:
        for props in plot.values():
            if isinstance(props, dict) and "template" in props:
                _copy_dep(props["template"], repo)

    # the stage's inputs: a checkpoint made by a tracked training run (the run is tagged with the model's
    # fingerprint, as training does; the checkpoint names no run), and a test shard
    client = MlflowClient(uri)
    experiment = client.create_experiment("texpress", (tmp_path / "art").as_uri())
    client.create_run(experiment, tags={"model_fingerprint": "another-model"})
    (repo / "models").mkdir()
    fp = save_checkpoint(build_model(get_preset("lite"), seed=0), repo / "models" / "model.ckpt", meta={"steps": 0})
    run_id = client.create_run(experiment, tags={"model_fingerprint": fp}).info.run_id
    (repo / "models" / "slim").mkdir()  # the slim stage's variant, evaluated beside its teacher
    save_checkpoint(build_model(get_preset("lite"), seed=1), repo / "models" / "slim" / "model.ckpt")
    _write_test_shard(repo / "data" / "shards" / "test" / "shard-000000.tar", photo_by_name)

    _run(["git", "init", "-q"], repo, env)
    _run(dvc + ["init", "-q"], repo, env)
    _run(dvc + ["repro", "evaluate"], repo, env)

    out = repo / "reports" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 2
    assert set(metrics["bd_rate"]) == {"texpress_vs_jpeg", "texpress_vs_webp", "slim_vs_jpeg", "slim_vs_webp"}

    shown = json.loads(_run(dvc + ["metrics", "show", "--json"], repo, env).stdout)
    data = next(iter(shown.values()))["data"]["reports/eval/metrics.json"]["data"]  # rev "" before a commit
    assert data["images"] == 2 and data["texpress"]["psnr-rgb"] == pytest.approx(metrics["texpress"]["psnr-rgb"])

    plots = json.loads(_run(dvc + ["plots", "show", "--json"], repo, env).stdout)
    assert not plots.get("errors"), plots.get("errors")
    rendered = plots["data"]
    vega = rendered["reports/eval/rd_long.csv"][0]
    assert vega["type"] == "vega"
    rows = vega["content"]["data"]["values"]
    assert {r["curve"] for r in rows} == {"texpress", "slim", "jpeg", "webp"}
    assert {r["metric"] for r in rows} >= {"PSNR RGB (dB)", "MS-SSIM RGB (dB)", "checkerboard score"}
    for png in ("rd_psnr.png", "rd_msssim.png", "texture.png", "crops.png"):
        assert rendered[f"reports/eval/{png}"][0]["type"] == "image"

    again = _run(dvc + ["repro", "evaluate"], repo, env)
    assert "Running stage" not in again.stdout + again.stderr
    # a forced re-run reproduces every declared output byte for byte: only the timings differ, kept apart
    lock = (repo / "dvc.lock").read_text()
    timings = (out / "timings.json").read_text()
    _run(dvc + ["repro", "-f", "evaluate"], repo, env)
    assert (repo / "dvc.lock").read_text() == lock
    assert (out / "timings.json").read_text() != timings and "encode_s" in (out / "timings.csv").read_text()

    # the same numbers and figures in the training run
    run = client.get_run(run_id)
    assert run.data.metrics["eval/texpress/psnr-rgb"] == pytest.approx(metrics["texpress"]["psnr-rgb"])
    assert run.data.metrics["eval/images"] == 2
    logged = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/metrics.json", "eval/summary.json", "eval/rd_psnr.png", "eval/crops.png"} <= logged
