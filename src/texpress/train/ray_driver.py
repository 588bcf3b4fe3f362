"""The driver side of training: Ray set-up, the TorchTrainer, resume, and the outputs.

- Ray: joins the cluster at RAY_ADDRESS when set (or the one this process already joined), else
  starts a local Ray with workers x cpus_per_worker CPUs (and shuts it down at the end).
- TorchTrainer with ScalingConfig(workers, GPUs per worker), FailureConfig(max_failures) and
  CheckpointConfig(num_to_keep); the loop is texpress.train.ray_worker.train_loop_per_worker.
- Resume: Ray Train V2 has no Trainer.restore; a trainer re-created with the same storage path and
  run name picks up the stored run's latest checkpoint. The default run name is a hash of
  everything that determines the result (configs, data version, warm-start source), so running
  the same command again after the driver died resumes the interrupted run; a finished run is
  marked complete and the next identical command trains a fresh run beside it.
- Outputs: OUT/model.ckpt (ready-to-code), OUT/train_metrics.json, OUT/train_curves.tsv and
  OUT/curves/*.png, copied from the final Ray checkpoint, each written under a temporary name.
- Failure: a training that fails beyond what FailureConfig recovers from ends its MLflow run
  FAILED (KILLED on Ctrl-C) with the reason in the tag `failure_reason`; the same command run
  again resumes it.
- Quiet start-up: Ray Train's preemption watcher (it only reports node drains, which texpress does
  not use) is left out; its actor's start-up warning reached every user's console.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from texpress.codec.config import ModelConfig, preset_name
from texpress.data.config import LoaderConfig
from texpress.data.loader import list_shards
from texpress.data.manifest import dataset_version
from texpress.data.storage import is_url, local_path, url_to_fs
from texpress.errors import InputError, TexpressError, TrainingError
from texpress.mlstore import ensure_experiment, resolve_tracking
from texpress.train.config import TrainConfig
from texpress.train.identity import run_identity
from texpress.train.losses import load_lpips
from texpress.train.ray_worker import train_loop_per_worker
from texpress.train.state import CURVES_FILE, METRICS_FILE, MODEL_FILE, read_init, write_run_record
from texpress.train.step_loop import say
from texpress.train.tracking import fail_active_runs, git_commit

COMPLETE_MARKER = ".texpress-complete"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
QUIET_RAY_TRAIN = {  # propagated by Ray Train from the driver to its controller and workers
    # the structured worker logs echo every report (a dict per checkpoint); rank 0 prints the progress
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    # the PreemptionWatcher actor's start-up warning ("constructor arguments in the object store")
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


@dataclass
class TrainOutcome:
    out_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    run_name: str
    storage_path: str
    mlflow_run_id: str
    tracking_uri: str
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def _is_url(path: str) -> bool:
    return is_url(path) and not str(path).startswith("file://")


def _abs(path: str | os.PathLike) -> str:
    text = str(path)
    return text if _is_url(text) else str(Path(local_path(text)).resolve())


def _fs(storage: str):
    return url_to_fs(storage)


def is_complete(storage: str, name: str) -> bool:
    fs, root = _fs(storage)
    return fs.exists(f"{root.rstrip('/')}/{name}/{COMPLETE_MARKER}")


def mark_complete(storage: str, name: str, info: dict[str, Any]) -> None:
    fs, root = _fs(storage)
    path = f"{root.rstrip('/')}/{name}/{COMPLETE_MARKER}"
    with fs.open(path, "w") as f:
        f.write(json.dumps(info, sort_keys=True) + "\n")


def choose_run_name(storage: str, base: str, explicit: bool) -> str:
    """`base` unless that run finished; then base-2, base-3, ... (the first one not finished)."""
    if not is_complete(storage, base):
        return base
    if explicit:
        raise TrainingError(f"run {base!r} in {storage} already finished; choose another --run-name")
    n = 2
    while is_complete(storage, f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def _start_ray(cfg: TrainConfig):
    """(started_here, temp dir to remove): joins RAY_ADDRESS or an initialized Ray, else starts one."""
    import ray

    if ray.is_initialized():
        return False, None
    address = os.environ.get(ENV_RAY_ADDRESS)
    if address:
        # The job's actors get the address too: Ray Train's PlacementGroupCleaner looks the cluster
        # up on its own and, with several Ray instances on one machine, died with a traceback.
        env = {"env_vars": {ENV_RAY_ADDRESS: address}} if "://" not in address and address != "auto" else None
        ray.init(address=address, log_to_driver=True, runtime_env=env)
        return True, None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="tx-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    # no dashboard (ray[default] is not installed); Ray's own INFO/WARNING chatter is left in the
    # session's log files (among it the placement-group cleaner's state-API warnings, which need
    # the dashboard), errors and the training's progress lines reach this console.
    kwargs: dict[str, Any] = {"num_cpus": cfg.workers * cfg.cpus_per_worker, "include_dashboard": False,
                              "_temp_dir": temp_dir, "log_to_driver": True,
                              "logging_config": ray.LoggingConfig(log_level="ERROR")}
    if cfg.use_gpu:
        kwargs["num_gpus"] = max(1, round(cfg.workers * cfg.gpus_per_worker))
    ray.init(**kwargs)
    return True, temp_dir


def _failure_message(exc: BaseException) -> str:
    """One line: a worker's own TexpressError if there is one, else the first line of the error."""
    failures = getattr(exc, "worker_failures", None) or {}
    for err in failures.values():
        cause = getattr(err, "cause", None) or err
        for candidate in (cause, err, getattr(err, "__cause__", None)):
            if isinstance(candidate, TexpressError):
                return str(candidate)
    for err in failures.values():
        text = str(getattr(err, "cause", None) or err).strip().splitlines()
        lines = [ln for ln in text if ln.strip() and not ln.startswith((" ", "Traceback"))]
        if lines:
            return lines[-1]
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _end_mlflow_run(uri: str, experiment_id: str, tags: dict[str, str], reason: str, status: str) -> None:
    """The stored run's MLflow run (rank 0 created it) ends `status` with the reason as a tag."""
    try:
        fail_active_runs(uri, experiment_id, tags, reason, status)
    except Exception as exc:  # the training error is what the user must see, not a tracking one
        say(f"warning: could not mark the MLflow run {status}: {str(exc).splitlines()[0] if str(exc) else exc}")


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        if src.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            if dst.exists():
                shutil.rmtree(dst)
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def run_training(cfg: TrainConfig, loader_cfg: LoaderConfig, shards: str | os.PathLike, out_dir: str | os.PathLike, *,
                 init_from: str | os.PathLike | None = None, run_name: str | None = None,
                 storage_path: str | None = None, tracking_dir: str | os.PathLike | None = None) -> TrainOutcome:
    """Train on the shard folder `shards` (local path or URL); write the outputs to `out_dir`."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    shards = _abs(shards)
    if cfg.teacher is not None:  # the workers run in their own folders
        cfg = cfg.replace(teacher=_abs(cfg.teacher))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # found out now, not after the whole training
        raise InputError(f"{out_dir}: output exists and is not a folder")
    if not list_shards(shards, "train"):
        raise InputError(f"{shards}: no training shards (expected {shards}/train/shard-*.tar from `texpress data ingest`)")
    version = dataset_version(shards)
    if cfg.lpips_weights:
        load_lpips(cfg.lpips_weights, cfg.lpips_net)  # fail here, with one line, rather than in every worker
    init_payload = read_init(init_from) if init_from is not None else None
    init_source = None
    if init_payload is not None:
        init_source = init_payload.get("fingerprint") or init_payload["source"]
    try:  # the inputs are usable: make sure the outputs can be written before training starts
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None

    uri, artifact_location = resolve_tracking(tracking_dir)
    experiment_id = ensure_experiment(uri, cfg.experiment, artifact_location)
    storage = _abs(storage_path or cfg.storage_path)
    if not _is_url(storage):
        Path(storage).mkdir(parents=True, exist_ok=True)
    base = run_name or f"texpress-{run_identity(cfg, loader_cfg, version, init_source, shards=shards)}"
    name = choose_run_name(storage, base, explicit=run_name is not None)
    commit = git_commit()
    preset = preset_name(ModelConfig.from_dict(init_payload["model_config"])) if init_payload else cfg.preset
    tags = {"data_version": version, "git_commit": commit or "unknown", "preset": preset,
            "ray_run_name": name, "ray_storage_path": storage}
    if commit:
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")

    for key, value in QUIET_RAY_TRAIN.items():
        os.environ.setdefault(key, value)
    started_ray, ray_tmp = _start_ray(cfg)
    try:
        config: dict[str, Any] = {
            "train": cfg.to_dict(), "loader": loader_cfg.to_dict(), "shards": shards, "run_name": name,
            "mlflow": {"uri": uri, "experiment_id": experiment_id}, "tags": tags,
            "init": ray.put(init_payload) if init_payload is not None else None,
        }
        resources = {"CPU": cfg.cpus_per_worker}
        if cfg.use_gpu:
            resources["GPU"] = cfg.gpus_per_worker
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=name, storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # progress comes from rank 0
            ),
        )
        run_tags = {"ray_run_name": name, "ray_storage_path": storage}
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            reason = _failure_message(exc)
            _end_mlflow_run(uri, experiment_id, run_tags, reason, "FAILED")
            raise TrainingError(f"training failed: {reason}") from None
        except KeyboardInterrupt:
            _end_mlflow_run(uri, experiment_id, run_tags, "interrupted (Ctrl-C)", "KILLED")
            raise
        if result.checkpoint is None or not result.metrics or not result.metrics.get("done"):
            raise TrainingError("training ended without a final checkpoint")
        metrics = dict(result.metrics)
        files: dict[str, Path] = {}
        with result.checkpoint.as_directory() as d:
            d = Path(d)
            for name_in, name_out in ((MODEL_FILE, MODEL_FILE), (METRICS_FILE, METRICS_FILE),
                                      (CURVES_FILE, CURVES_FILE), ("curves", "curves")):
                if (d / name_in).exists():
                    _copy_atomic(d / name_in, out_dir / name_out)
                    files[name_out] = out_dir / name_out
        if MODEL_FILE not in files:
            raise TrainingError("the final checkpoint holds no model")
        record = {"model_fingerprint": metrics.get("model_fingerprint"),
                  "mlflow_run_id": metrics.get("mlflow_run_id"), "steps": metrics.get("step")}
        write_run_record(out_dir, {**record, "tracking_uri": uri, "git_commit": commit, "run_name": name,
                                   "seconds": round(time.perf_counter() - started, 1)})
        mark_complete(storage, name, record)
    finally:
        if started_ray:
            ray.shutdown()
        if ray_tmp:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return TrainOutcome(out_dir=out_dir, model_path=files[MODEL_FILE], metrics=metrics, run_name=name,
                        storage_path=storage, mlflow_run_id=str(metrics.get("mlflow_run_id", "")), tracking_uri=uri,
                        seconds=time.perf_counter() - started, files=files)


def summary_table(outcome: TrainOutcome) -> Table:
    """The summary `texpress train` and the DVC stage print after a Ray training."""
    m = outcome.metrics
    table = Table(title="training", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", str(outcome.model_path)),
        ("steps", f"{m.get('step')} on {m.get('world_size')} worker(s)"
                  + (f", resumed at step {', '.join(map(str, m['resumed_from']))}" if m.get("resumed_from") else "")),
    ]
    if "val_bpp" in m:
        rows.append(("validation", f"{m['val_bpp']:.4f} bpp (bitstream), {m['val_psnr']:.2f} dB PSNR, "
                                   f"MS-SSIM {m['val_ms_ssim']:.4f} on {m.get('val_images')} image(s)"))
    if "train_bpp" in m:
        rows.append(("last batch", f"{m['train_bpp']:.4f} bpp, {m['train_psnr']:.2f} dB PSNR"))
    rows += [
        ("MLflow", f"run {outcome.mlflow_run_id} in {outcome.tracking_uri}"),
        ("Ray run", f"{outcome.run_name} in {outcome.storage_path}"),
        ("time", f"{outcome.seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, Text(v))  # paths may hold [brackets]: plain text, not rich markup
    return table
