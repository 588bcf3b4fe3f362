"""Flow `train`: train (or warm start) the codec on Ray, make its slim variant, evaluate both, and register them.

The run's settings go into params.yaml and the DVC stages do the work (`dvc repro train slim evaluate`),
so a run from the UI and `dvc repro` on the same checkout give the same model and the same
dvc.lock; the checkpoint is then registered through texpress.registry (idempotent: a checkpoint
registered before keeps its version). A re-run with the same data version, params and code returns
the cached result instead of training again (`force` trains anyway).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from prefect import flow, task
from prefect.cache_policies import INPUTS
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from flows.common import (TRANSIENT_RETRIES, StageFailed, Text, check_local_path, dvc, mlflow_links, model_name,
                          read_json, registry_config, repo_root, report, set_params, tracking_uri)

RayAddress = Annotated[str, StringConstraints(pattern=r"^(ray://)?[^\s:/]+:\d{1,5}/?$")]  # [ray://]HOST:PORT
EVAL_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "checkerboard", "texture-distance", "hf-ratio")


class TrainParams(BaseModel):
    """One training run; unset fields keep the values in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["lite", "base", "hific"] | None = Field(None, description="Model preset (from scratch).")
    init_from: Text | None = Field(None, description="Warm start from a checkpoint path or models:/NAME@ALIAS.")
    rd_steps: int | None = Field(None, ge=0, description="Rate-distortion steps (phase 1).")
    gan_steps: int | None = Field(None, ge=0, description="Adversarial steps (phase 2).")
    workers: int | None = Field(None, ge=1, description="Ray Train workers.")
    gpus_per_worker: float | None = Field(None, ge=0, description="GPUs per worker (0: CPU).")
    patch_size: int | None = Field(None, ge=16, description="Training crop side in pixels.")
    batch_size: int | None = Field(None, ge=1, description="Crops per worker and step.")
    ray_address: RayAddress | None = Field(None, description="Ray cluster (ray://HOST:10001); default "
                                           "$RAY_ADDRESS, else a local Ray.")
    register_model: bool = Field(True, description="Register the trained model in the MLflow model registry.")
    model_name: Text | None = Field(None, description="Registered model name (default: registry.name, "
                                    "else texpress-PRESET).")
    slim_ratio: float | None = Field(None, gt=0, le=0.95, description="Slim variant: fraction of the generator's "
                                     "channels pruned (slim.ratio).")
    slim_steps: int | None = Field(None, ge=1, description="Slim variant: distillation steps (slim.steps).")
    register_slim: bool = Field(True, description="Register the slim variant too, as the model name + slim.register_suffix.")
    extra_params: dict[str, Any] = Field({}, description='More params.yaml overrides, e.g. {"train.val_every": 50}.')
    force: bool = Field(False, description="Train even when this data version and these params were trained before.")

    def param_changes(self) -> dict[str, Any]:
        """The params.yaml keys this run sets: the fields that are set, then extra_params as given."""
        fields = {"train.preset": self.preset, "train.init_from": self.init_from, "train.rd_steps": self.rd_steps,
                  "train.gan_steps": self.gan_steps, "train.workers": self.workers,
                  "train.gpus_per_worker": self.gpus_per_worker, "loader.patch_size": self.patch_size,
                  "loader.batch_size": self.batch_size, "slim.ratio": self.slim_ratio, "slim.steps": self.slim_steps}
        return {**{k: v for k, v in fields.items() if v is not None}, **self.extra_params}


@task(**TRANSIENT_RETRIES)
def check_ray(address: str) -> None:
    """Reach the Ray cluster's port before training starts (a head node may be restarting)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10):
            pass
    except OSError as exc:
        raise StageFailed(f"Ray cluster {address} not reachable: {exc.strerror or exc}") from None


@task
def dataset(repo: Path) -> str:
    """`dvc repro shard` (a no-op when the dataset is current); the data version."""
    from texpress.data.manifest import dataset_version

    dvc("repro", "shard", cwd=repo)
    return dataset_version(repo / "data" / "shards")


def warm_start_source(repo: Path) -> str | None:
    """The fingerprint of the model train.init_from names now: a models:/ alias may have moved, a
    file may have been replaced, and neither changes params.yaml."""
    from texpress.params import load_params

    init = load_params(repo / "params.yaml", "train").get("init_from")
    if not init:
        return None
    from texpress.train.state import read_init

    if init.startswith("models:/"):
        from texpress.registry.refs import resolve_checkpoint

        path = Path(resolve_checkpoint(init, tracking_uri(repo)))
    else:
        path = repo / init
    return str(read_init(path).get("fingerprint") or path.stat().st_mtime_ns)


def fingerprint(repo: Path, stages: list[str], data_version: str, init: str | None) -> str:
    """What decides a training run's result: the data version, the stages' params, the warm-start
    model and the code."""
    from texpress.params import load_params

    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    names = [p for stage in stages for p in pipeline[stage].get("params", []) if isinstance(p, str)]
    sections = sorted({p.split(".")[0] for p in names})  # "registry.register_on_train" -> "registry"
    params = {s: load_params(repo / "params.yaml", s) for s in sections}
    git = ["git", "-C", str(repo)]
    code = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    code += subprocess.run(git + ["diff", "HEAD", "--", "src", "pipelines", "dvc.yaml"], capture_output=True,
                           text=True).stdout
    blob = json.dumps({"stages": stages, "data": data_version, "params": params, "init": init, "code": code},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@task(cache_policy=INPUTS, persist_result=True, retries=1, retry_delay_seconds=30)
def repro_train(repo: Path, stages: list[str], run_fingerprint: str, ray_address: str | None,
                warm: bool) -> dict[str, Any]:
    """`dvc repro train slim evaluate`; a retry resumes the Ray run from its last checkpoint. A warm start
    forces the train stage: DVC cannot see that the model behind train.init_from changed."""
    env = {"RAY_ADDRESS": ray_address} if ray_address else None
    if warm:
        dvc("repro", "--force", "--single-item", stages[0], cwd=repo, env=env)
    dvc("repro", *stages, cwd=repo, env=env)
    train_metrics = read_json(repo / "models" / "train_metrics.json")
    run = read_json(repo / "models" / "run.json")  # the MLflow run id, kept out of the DVC metrics
    if run.get("model_fingerprint") == train_metrics.get("model_fingerprint"):
        train_metrics["mlflow_run_id"] = run.get("mlflow_run_id")
    eval_metrics = read_json(repo / "reports" / "eval" / "metrics.json")
    return {"train": train_metrics, "eval": eval_metrics, "fingerprint": run_fingerprint}


@task(**TRANSIENT_RETRIES)
def register_version(repo: Path, name: str, model: str = "models/model.ckpt") -> dict[str, Any]:
    """A model version for `model` (models/model.ckpt, or the slim variant) with its evaluation tags (the
    same version when that checkpoint is already registered); retried, as the tracking server may be
    briefly unreachable."""
    from texpress.registry.register import register_checkpoint

    reg = register_checkpoint(repo / model, name, tracking_uri=tracking_uri(repo),
                              eval_summary=repo / "reports" / "eval" / "summary.json", cfg=registry_config(repo))
    return {"name": reg.name, "version": reg.version, "created": reg.created}


def checkpoint_fingerprint(repo: Path) -> str | None:
    from texpress.codec.checkpoint import read_checkpoint

    model = repo / "models" / "model.ckpt"
    return read_checkpoint(model).get("fingerprint") if model.is_file() else None


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The metrics table of the run's report."""
    t, e = result["train"], result["eval"]
    rows = {"model fingerprint": t.get("model_fingerprint"), "steps": t.get("steps"), "val bpp": t.get("val_bpp"),
            "val PSNR (dB)": t.get("val_psnr"), "val MS-SSIM": t.get("val_ms_ssim")}
    rows.update({f"test {k}": e.get("texpress", {}).get(k) for k in EVAL_KEYS if e})
    for pair, values in (e.get("bd_rate") or {}).items():  # BD-rates need 2+ points per curve
        if values.get("psnr-rgb") is not None:
            rows[f"BD-rate PSNR {pair.split('_vs_')[-1]} (%)"] = values["psnr-rgb"]
    return rows


@flow(name="train", log_prints=True)
def train(params: TrainParams = TrainParams()) -> dict[str, Any]:
    """Train or warm start the codec on Ray, make its slim variant, evaluate both against the classical codecs,
    and register them."""
    repo = repo_root()
    if params.init_from and not params.init_from.startswith("models:/"):
        check_local_path(params.init_from, repo, "init_from")  # before params.yaml changes
    if params.ray_address:
        check_ray(params.ray_address)
    set_params(repo, params.param_changes())
    version = dataset(repo)
    stages = ["train", "slim", "evaluate"]
    init = warm_start_source(repo)
    args = (repo, stages, fingerprint(repo, stages, version, init), params.ray_address, init is not None)
    result = repro_train.with_options(refresh_cache=params.force)(*args)
    if checkpoint_fingerprint(repo) != result["train"].get("model_fingerprint"):  # cached, but the checkout moved on
        result = repro_train.with_options(refresh_cache=True)(*args)
    run_id = result["train"].get("mlflow_run_id")
    registered = register_version(repo, model_name(repo, params.model_name)) if params.register_model else None
    rows = summary(result)
    slim = None
    if registered and params.register_slim:
        from texpress.params import load_params
        from texpress.slim.config import SlimConfig

        suffix = SlimConfig.from_dict(load_params(repo / "params.yaml", "slim")).register_suffix
        slim = register_version(repo, registered["name"] + suffix, "models/slim/model.ckpt")
    if registered:
        rows["registered version"] = f"{registered['name']} {registered['version']}"
    if slim:
        rows["registered slim version"] = f"{slim['name']} {slim['version']}"
    links = mlflow_links(run_id, registered and registered["name"], registered and registered["version"])
    report("train", f"Training on data version {version[:16]}", rows, links)
    return {**result, "data_version": version, "mlflow_run_id": run_id, "registered": registered, "slim": slim}
