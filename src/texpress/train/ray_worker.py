"""The Ray Train loop: what every worker runs (`train_loop_per_worker`).

Each worker opens a training session (texpress.train.state): it restores the latest Ray
checkpoint (after a worker failure or a re-run of the same stored run) or warm-starts from a given
checkpoint, wraps both models for DDP, reads its own part of the training shards (a resumed run
continues the same sample stream) and runs the shared step loop (texpress.train.step_loop). Rank 0
also validates, logs to MLflow and writes the checkpoints; every rank calls ray.train.report at
the same steps (it is a barrier).

A Ray checkpoint (every `checkpoint_every` steps) is a folder with `train_state.pt`: model, D, the
three optimizers and schedulers, the rate-control state, the step, the loss history, the data seed
and the MLflow run id; everything is tensors and plain types and loads with weights_only=True.
The final one adds the ready-to-code `model.ckpt` (entropy coder updated), `train_metrics.json`,
the curves TSV and PNGs (texpress.train.validation.write_final).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from texpress.codec.checkpoint import fingerprint
from texpress.data.config import LoaderConfig
from texpress.train.config import TrainConfig
from texpress.train.inputs import shard_batches, shard_val_items
from texpress.train.state import STATE_FILE, Session, open_session
from texpress.train.step_loop import Hooks, run_steps, say
from texpress.train.tracking import RunLogger, flatten_params
from texpress.train.validation import log_validation, write_final


def _max_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


def _open(config: dict[str, Any], cfg, loader_cfg, device) -> Session:
    """Setup and resume: the stored run's latest checkpoint, else the warm start, else the preset."""
    import ray
    import ray.train
    import ray.train.torch

    state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    init = config.get("init") if state is None else None
    if isinstance(init, ray.ObjectRef):
        init = ray.get(init)

    def wrap(model, disc):
        return (ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True}),
                ray.train.torch.prepare_model(disc))

    return open_session(cfg, device=device, data_seed=loader_cfg.seed, state=state, init=init,
                        run_id=config.get("mlflow_run_id"), wrap=wrap)


def _tracking(config: dict[str, Any], s: Session, loader_cfg, world: int):
    """Rank 0: the MLflow run (created, or re-opened after a restart) and the validation images."""
    mlflow_cfg = config["mlflow"]
    if s.run_id:
        tracker = RunLogger(mlflow_cfg["uri"], s.run_id)
        tracker.resume(s.step)
    else:
        params = {**flatten_params("train.", s.cfg.to_dict()), **flatten_params("loader.", loader_cfg.to_dict()),
                  **flatten_params("model.", s.model_cfg.to_dict()),
                  "world_size": str(world), "shards": str(config["shards"]), "init_from": s.warm_start or "none"}
        tracker = RunLogger.start(mlflow_cfg["uri"], mlflow_cfg["experiment_id"], run_name=config.get("run_name"),
                                  params=params, tags=config.get("tags", {}))
        s.run_id = tracker.run_id
    val_items = shard_val_items(config["shards"], loader_cfg, s.cfg.val_images)
    if s.cfg.val_images > 0 and not val_items:
        say("warning: no validation images in the val split; validation is skipped")
    return tracker, val_items


def _reporter(s: Session, rank: int):
    """report(metrics, files, dir_name): rank 0 reports the checkpoint, the others only metrics; then
    every rank waits until Ray Train has committed it (the controller collects reports
    asynchronously: without the wait a failure right after a report could lose that checkpoint)."""
    import ray.train

    def report(metrics: dict[str, Any], folder: Path | None, dir_name: str) -> None:
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="texpress-ckpt-"))
            try:
                torch.save(s.state(), tmp / STATE_FILE)
                if folder is not None:
                    for item in folder.iterdir():
                        (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)),
                                 checkpoint_dir_name=dir_name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)

    return report


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    warnings.filterwarnings("ignore", message="Using padding='same'")  # the discriminator's 4x4 'same' conv

    import ray
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_dict(config["train"])
    loader_cfg = LoaderConfig.from_dict(config["loader"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    started = time.perf_counter()

    s = _open(config, cfg, loader_cfg, ray.train.torch.get_device())
    tracker, val_items = _tracking(config, s, loader_cfg, world) if rank == 0 else (None, [])
    report = _reporter(s, rank)

    def checkpoint(step: int, stats: dict[str, float]) -> None:
        report({"step": step, "phase": cfg.phase(step - 1), "bpp": stats["bpp"],
                "psnr": stats["psnr"], "loss_rd": stats["loss_rd"], "mlflow_run_id": s.run_id or ""},
               None, f"checkpoint_{step:07d}")

    if rank == 0:
        say(f"training {cfg.total_steps} steps ({cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial) on "
            f"{world} worker(s), {s.where()}; MLflow run {s.run_id}")
    validate = (lambda step: log_validation(s, val_items, tracker, step)) if val_items else None
    batches = shard_batches(config["shards"], loader_cfg, seed=s.data_seed, start_step=s.step, rank=rank, world=world)
    result = run_steps(s, batches,
                       Hooks(tracker=tracker, validate=validate, checkpoint=checkpoint), rank=rank, world=world)
    _finish(config, s, result, rank, world, started, tracker, val_items, report)


def _finish(config, s: Session, result, rank: int, world: int, started: float, tracker, val_items, report) -> None:
    """Per-rank summary (gathered), then rank 0's final validation, outputs and last report."""
    import ray
    import torch.distributed as dist


    cfg, step, steps_run = s.cfg, s.step, result.steps_run
    info = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "steps_run": steps_run,
            "rd_steps_run": max(0, min(step, cfg.rd_steps) - (step - steps_run)),
            "samples": steps_run * config["loader"]["batch_size"],
            **{f"{k}_s": v for k, v in result.timer.totals.items()},
            "max_rss_mb": _max_rss_mb(resource.RUSAGE_SELF),
            "max_rss_children_mb": _max_rss_mb(resource.RUSAGE_CHILDREN),
            "fingerprint": fingerprint(s.t.codec), "seconds": time.perf_counter() - started}
    ranks = [None] * world
    if world > 1:
        dist.all_gather_object(ranks, info)
    else:
        ranks = [info]
    metrics: dict[str, Any] = {"step": step, "done": True, "mlflow_run_id": s.run_id or "", "world_size": world,
                               "resumed_from": s.resumed_from, "ranks": ranks,
                               "identical_models": len({r["fingerprint"] for r in ranks}) == 1}
    if rank != 0:
        report(metrics, None, "")
        return
    tags = config.get("tags", {})
    # what was trained, not which run trained it: the run id and commit are the MLflow run's tags (found by
    # the fingerprint), so the same training reproduces the same checkpoint bytes (dvc.lock stays as it is)
    meta = {"preset": s.preset, "steps": step, "target_bpp": cfg.target_bpp,
            "data_version": str(tags.get("data_version", "")), **s.objective_meta(), **s.slim_meta()}
    ready = Path(tempfile.mkdtemp(prefix="texpress-final-"))
    try:
        metrics.update(write_final(s, ready, val_items=val_items, tracker=tracker, meta=meta, last=result.last))
        tracker.finish("FINISHED")
        report(metrics, ready, f"checkpoint_{step:07d}_final_{int(time.time())}")
    finally:
        shutil.rmtree(ready, ignore_errors=True)
