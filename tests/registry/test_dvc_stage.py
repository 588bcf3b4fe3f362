"""The project's `register` stage in a real DVC repo against the default store (./mlflow.db): the
train stage's own registration (registry.register_on_train), then `dvc repro register` finds that
version, tags it with the evaluation, runs the gate, and leaves no untracked file behind."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mlflow.tracking import MlflowClient

from texpress.codec.checkpoint import load_model, read_checkpoint, save_checkpoint
from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.run import run_eval
from texpress.slim.prune import prune_model

from ..conftest import isolated_dvc_env

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    return r


@pytest.mark.heavy
def test_register_stage_in_a_dvc_repo(tmp_path, checkpoints, images, gate_cfg, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = isolated_dvc_env(tmp_path, TEXPRESS_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MLFLOW_TRACKING_URI", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["register"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"register": stage}}, sort_keys=False))
    section = gate_cfg.to_dict() | {"images": ["data/shards/test"], "register_on_train": True}
    (repo / "params.yaml").write_text(yaml.safe_dump({"registry": section, "slim": {"register_suffix": "-slim"}},
                                                     sort_keys=False))
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    code = [d for d in stage["deps"] if not d.startswith(("models/", "reports/", "data/"))]
    for dep in [*code, "pipelines/train.py"]:
        src, dst = ROOT / dep, repo / dep
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, dst))
    shutil.copytree(images, repo / "data" / "shards" / "test")

    # a training run in the default store, as the train stage leaves it, and its checkpoint
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    run_id = client.create_run(client.create_experiment("texpress", (repo / "mlartifacts").as_uri())).info.run_id
    payload = read_checkpoint(checkpoints["good"])
    (repo / "models").mkdir()
    shutil.copy(checkpoints["good"], repo / "models" / "model.ckpt")
    (repo / "models" / "slim").mkdir()  # the slim stage's variant: registered beside its teacher
    slim = save_checkpoint(prune_model(load_model(checkpoints["good"]), 0.5).model, repo / "models" / "slim" / "model.ckpt")
    run_eval([str(images)], [ModelSpec.parse(str(repo / "models" / "model.ckpt")),
                             ModelSpec.parse(f"slim={repo / 'models' / 'slim' / 'model.ckpt'}")],
             EvalConfig(baselines=("jpeg",)), repo / "reports" / "eval")

    # the train stage registers at once when params say so (its model names no run: pass the run as it does)
    monkeypatch.chdir(repo)
    spec = importlib.util.spec_from_file_location("train_stage", repo / "pipelines" / "train.py")
    train_stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_stage)
    assert train_stage.register(SimpleNamespace(model_path=repo / "models" / "model.ckpt", tracking_uri=None,
                                                mlflow_run_id=run_id)) == 0
    versions = client.search_model_versions("name = 'texpress-lite'")
    assert [v.run_id for v in versions] == [run_id]

    _run(["git", "init", "-q"], repo, env)
    _run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "start"], repo, env)
    out = _run([str(Path(sys.executable).parent / "dvc"), "repro", "register"], repo, env).stdout
    assert "already registered: texpress-lite version 1" in out

    record = json.loads((repo / "reports" / "registry" / "decision.json").read_text())
    assert record["registered"]["fingerprint"] == payload["fingerprint"]
    assert record["slim"]["name"] == "texpress-lite-slim" and record["slim"]["fingerprint"] == slim
    assert "eval.psnr-rgb" in client.get_model_version("texpress-lite-slim", record["slim"]["version"]).tags
    assert record["decision"]["promoted"] and record["decision"]["champion"] is None  # the PSNR floor: 10 dB
    mv = client.get_model_version_by_alias("texpress-lite", "champion")
    assert str(mv.version) == "1" and "eval.psnr-rgb" in mv.tags and mv.tags["texpress.training_run"] == run_id
    # the checkout stays clean: only dvc.lock is new; the store, artifacts and decision are ignored
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], repo, env).stdout.split("\n")
    assert [line for line in status if line.strip()] == ["?? dvc.lock"]
