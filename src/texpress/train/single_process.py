"""The single-process trainer: one GPU or the CPU, no Ray (`texpress train --backend torch`, or
`python -m texpress.train` on a bare GPU box).

The same session, step loop, validation and outputs as the Ray workers (texpress.train.state,
.step_loop, .validation), in one process, with its own pieces beside it: the device
(train.device), the photos or shards it reads (train.inputs), its checkpoint pairs and resume
(train.checkpoints), the run identity (train.identity), the MLflow set-up (train.tracking) and the
stop on a time limit or Ctrl-C (train.stop).

- outputs: OUT/model.ckpt (ready for `texpress compress --model`), train_metrics.json,
  train_curves.tsv and curves/*.png (with matplotlib); a finished run removes its checkpoints, so
  the same command then trains afresh, and a stopped one resumes from the newest pair with the
  same batches and noise as an uninterrupted run;
- MLflow when it is installed (not with --no-mlflow): the same params, metrics and artifacts as
  the Ray path; a run that fails ends FAILED with the reason in the tag `failure_reason`.

Only torch, compressai, numpy, Pillow and pytorch-msssim are imported unless shards, MLflow or a
params file are used.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from texpress.errors import InputError, TexpressError, TrainingError
from texpress.train.checkpoints import CHECKPOINT_DIR, load_resume, save_checkpoint_pair
from texpress.train.config import TrainConfig
from texpress.train.device import Precision, pick_device, pick_precision, tune_for
from texpress.train.identity import run_identity
from texpress.train.inputs import check_inputs, data_version, photo_inputs, shard_batches, shard_val_items
from texpress.train.state import MODEL_FILE, Session, open_session, read_init, write_run_record
from texpress.train.step_loop import Hooks, run_steps, say
from texpress.train.stop import StopRequest
from texpress.train.tracking import git_commit, open_tracker
from texpress.train.validation import log_validation, write_final


@dataclass
class SingleOutcome:
    out_dir: Path
    model_path: Path | None  # None when stopped early
    step: int
    stopped: bool
    metrics: dict[str, Any]
    mlflow_run_id: str
    tracking_uri: str
    device: str
    seconds: float
    resumed_from: list[int] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)


def train_single(cfg: TrainConfig, loader_cfg, out_dir: str | os.PathLike, *, images: str | os.PathLike | None = None,
                 shards: str | None = None, val: str | os.PathLike | None = None,
                 init_from: str | os.PathLike | None = None, device: str | None = None, amp: bool | None = None,
                 time_limit: float | None = None, mlflow: bool = True,
                 tracking_dir: str | os.PathLike | None = None) -> SingleOutcome:
    """Train in this process; resume from OUT/checkpoints when they are there."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    images = Path(images) if images is not None else None
    check_inputs(images, shards, out_dir)
    dev = pick_device(device)
    precision = pick_precision(dev, amp)
    tune_for(dev)
    init = read_init(init_from) if init_from is not None else None
    version = data_version(images, shards)
    init_id = (init.get("fingerprint") or init["source"]) if init is not None else None
    identity = run_identity(cfg, loader_cfg, version, init_id, amp=precision.amp is not None,
                            **({"channels_last": True} if precision.channels_last else {}))
    ckpt_dir = out_dir / CHECKPOINT_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    state = load_resume(ckpt_dir, identity)
    s = open_session(cfg, device=dev, data_seed=loader_cfg.seed, state=state, init=None if state else init)
    del state
    commit = git_commit()
    tags = {"data_version": version, "git_commit": commit or "unknown", "preset": s.preset,
            "backend": "torch", "device": str(dev), "output": str(out_dir.resolve()), "run_identity": identity}
    if precision.channels_last:
        s.t.codec.to(memory_format=torch.channels_last)
        s.t.disc.to(memory_format=torch.channels_last)
    params = {"init_from": s.warm_start or "none", "data": str(images or shards), "precision": precision.name}
    tracker, uri = open_tracker(mlflow, s, loader_cfg, params=params, tags=tags, tracking_dir=tracking_dir)
    try:
        return _run(s, loader_cfg, out_dir, ckpt_dir, identity, images, shards, val, tracker, uri, precision,
                    time_limit, tags, started)
    except KeyboardInterrupt:
        tracker.fail(f"interrupted at step {s.step}", status="KILLED")
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            reason = "CUDA out of memory (lower --batch-size or --crop)"
        tracker.fail(f"step {s.step}: {reason}")
        if isinstance(exc, TexpressError):
            raise
        raise TrainingError(f"training failed at step {s.step}: {reason}") from exc


def _run(s: Session, loader_cfg, out_dir, ckpt_dir, identity, images, shards, val, tracker, uri, precision: Precision,
         time_limit, tags, started) -> SingleOutcome:
    cfg = s.cfg
    if images is not None:
        batches, val_items = photo_inputs(images, val, loader_cfg, device=s.device, seed=s.data_seed,
                                          start_step=s.step, val_limit=cfg.val_images)
    else:
        batches = shard_batches(shards, loader_cfg, seed=s.data_seed, start_step=s.step)
        val_items = shard_val_items(shards, loader_cfg, cfg.val_images)
    if cfg.val_images > 0 and not val_items:
        say("no validation images (--val DIR, or the val split of the shards): validation is skipped")
    say(f"training {cfg.total_steps} steps ({cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial) on "
        f"{s.device} ({precision.name}), {loader_cfg.batch_size} x {loader_cfg.patch_size}-px crops, {s.where()}"
        + (f"; MLflow run {s.run_id}" if s.run_id else ""))

    def checkpoint(step: int, stats: dict) -> None:
        save_checkpoint_pair(s, ckpt_dir, identity, cfg.keep_checkpoints)

    validate = (lambda step: log_validation(s, val_items, tracker, step)) if val_items else None
    with StopRequest(time_limit) as stop:
        result = run_steps(s, batches, Hooks(tracker=tracker, validate=validate, checkpoint=checkpoint,
                                             should_stop=stop),
                           amp=precision.amp, channels_last=precision.channels_last)
    common = dict(out_dir=out_dir, step=s.step, mlflow_run_id=s.run_id or "", tracking_uri=uri, device=str(s.device),
                  resumed_from=s.resumed_from, throughput=result.throughput)
    if result.stopped:
        tracker.fail(f"stopped at step {s.step} ({stop.reason}); the same command resumes it", status="KILLED")
        return SingleOutcome(model_path=None, stopped=True, metrics={}, seconds=time.perf_counter() - started,
                             **common)
    meta = {"preset": s.preset, "steps": s.step, "target_bpp": cfg.target_bpp,  # run id, commit: MLflow tags
            "data_version": tags["data_version"], "backend": "torch", **s.objective_meta(), **s.slim_meta()}
    metrics = write_final(s, out_dir, val_items=val_items, tracker=tracker, meta=meta, last=result.last)
    write_run_record(out_dir, {"model_fingerprint": metrics.get("model_fingerprint"),
                               "mlflow_run_id": s.run_id or "", "tracking_uri": uri,
                               "git_commit": tags["git_commit"], "steps": s.step,
                               "device": str(s.device), "seconds": round(time.perf_counter() - started, 1)})
    tracker.set_tags({f"throughput_{k}": f"{v:.3f}" for k, v in result.throughput.items()})
    tracker.finish("FINISHED")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: the same command now trains afresh
    return SingleOutcome(model_path=out_dir / MODEL_FILE, stopped=False, metrics=metrics,
                         seconds=time.perf_counter() - started, **common)


def summary_lines(o: SingleOutcome) -> list[str]:
    m = o.metrics
    lines = [f"model       {o.model_path}" if o.model_path else
             f"stopped     at step {o.step}; run the same command again to continue",
             f"steps       {o.step} on {o.device}" + (f", resumed at step {', '.join(map(str, o.resumed_from))}"
                                                      if o.resumed_from else "")]
    if o.throughput:
        lines.append(f"throughput  {o.throughput['steps_per_s']:.3g} steps/s, {o.throughput['mpx_per_s']:.3g} Mpx/s "
                     "(data and steps, without validation and checkpoints)")
    if "val_bpp" in m:
        lines.append(f"validation  {m['val_bpp']:.4f} bpp (bitstream), {m['val_psnr']:.2f} dB PSNR, "
                     f"MS-SSIM {m['val_ms_ssim']:.4f} on {m.get('val_images')} image(s)")
    if o.mlflow_run_id:
        lines.append(f"MLflow      run {o.mlflow_run_id} in {o.tracking_uri}")
    lines.append(f"time        {o.seconds:.1f} s")
    return lines
