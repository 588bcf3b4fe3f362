"""The single-process trainer: one GPU or the CPU, no Ray (`texpress train --backend torch`).

The same session, step loop, validation and outputs as the Ray workers (texpress.train.session,
.stepper, .validation), in one process:

- data: a plain folder of photos decoded once onto the device and cropped there
  (texpress.data.device_crops), or the project's WebDataset shards when webdataset is installed;
- checkpoints every `checkpoint_every` steps in OUT/checkpoints: `step_NNNNNNN.ckpt` (the model
  checkpoint format: config + tensors) and `step_NNNNNNN.resume.pt` (D, optimizers, schedules,
  rate control, step, history, data seed, MLflow run id), each written atomically, the resume
  file last. Running the same command again resumes from the newest complete pair, with the
  same batches (the data order is a function of the seed and the step) and the same quantization
  noise (seeded per step) as an uninterrupted run. A finished run removes its checkpoints, so
  the same command then trains afresh;
- outputs: OUT/model.ckpt (ready for `texpress compress --model`), train_metrics.json,
  train_curves.tsv and curves/*.png (with matplotlib);
- MLflow when it is installed (not with --no-mlflow): the same params, metrics and artifacts as
  the Ray path; a run that fails ends FAILED with the reason in the tag `failure_reason`;
- a time limit (`--time-limit`) or Ctrl-C stops after a checkpoint; run the command again to go on.

Only torch, compressai, numpy, Pillow and pytorch-msssim are imported unless shards or MLflow are
used, so `PYTHONPATH=src python -m texpress.train.single ...` runs on a bare GPU box.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from texpress.errors import ConfigError, InputError, TexpressError
from texpress.train.config import TrainConfig
from texpress.train.session import MODEL_FILE, Session, open_session, read_init, write_run_record
from texpress.train.stepper import Hooks, run_steps, say
from texpress.train.trainer import TrainingError

CHECKPOINT_DIR = "checkpoints"
RESUME_FORMAT = "texpress-train-resume"


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


# ---------------------------------------------------------------- inputs and identity

def pick_device(name: str | None) -> torch.device:
    """`name` (cpu, cuda, cuda:1, mps), or cuda when there is a GPU, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available to torch here")
    return device


def run_identity(cfg: TrainConfig, loader_cfg, data: str, init: str | None, amp: bool) -> str:
    """A hash of what determines the trained model; checkpoints of another identity are not resumed."""
    train = cfg.to_dict()
    for k in ("storage_path", "experiment", "max_failures", "log_every", "keep_checkpoints", "workers",
              "cpus_per_worker", "gpus_per_worker", "checkpoint_every", "val_every", "val_images", "grid_images"):
        train.pop(k)
    loader = {k: v for k, v in loader_cfg.to_dict().items() if k in ("patch_size", "batch_size", "seed")}
    blob = json.dumps({"train": train, "loader": loader, "data": data, "init": init, "amp": amp}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _data_version(images: Path | None, shards: str | None) -> str:
    if images is not None:
        from texpress.data.device_crops import folder_version

        return f"folder:{folder_version(images)}"
    from texpress.data.manifest import dataset_version

    return dataset_version(shards)


# ---------------------------------------------------------------- checkpoints

def _paths(ckpt_dir: Path, step: int) -> tuple[Path, Path]:
    return ckpt_dir / f"step_{step:07d}.ckpt", ckpt_dir / f"step_{step:07d}.resume.pt"


def latest_checkpoint(ckpt_dir: Path) -> int | None:
    """The newest step with both files (the resume file is written last)."""
    steps = []
    for p in ckpt_dir.glob("step_*.resume.pt"):
        step = int(p.name.split("_")[1].split(".")[0])
        if _paths(ckpt_dir, step)[0].is_file():
            steps.append(step)
    return max(steps) if steps else None


def save_checkpoint_pair(s: Session, ckpt_dir: Path, identity: str, keep: int) -> None:
    from texpress.codec.checkpoint import save_checkpoint
    from texpress.codec.files import write_atomic

    model_path, resume_path = _paths(ckpt_dir, s.step)
    save_checkpoint(s.t.codec, model_path, meta={"steps": s.step, "preset": s.preset, "partial": True})
    state = {**s.state(with_model=False), "format": RESUME_FORMAT, "identity": identity}
    write_atomic(resume_path, writer=lambda tmp: torch.save(state, tmp))
    steps = sorted(int(p.name.split("_")[1].split(".")[0]) for p in ckpt_dir.glob("step_*.resume.pt"))
    for old in steps[:-keep]:
        for p in _paths(ckpt_dir, old):
            p.unlink(missing_ok=True)


def load_resume(ckpt_dir: Path, identity: str) -> dict | None:
    """The newest checkpoint as a training state (model tensors from the .ckpt), None when there is
    none; an InputError when it belongs to a run with other settings or data."""
    from texpress.codec.checkpoint import read_checkpoint

    step = latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    if step is None:
        return None
    model_path, resume_path = _paths(ckpt_dir, step)
    try:
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{resume_path}: not a readable resume file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise InputError(f"{resume_path}: not a texpress resume file")
    if state.get("identity") != identity:
        raise InputError(f"{ckpt_dir} holds checkpoints of a run with other settings or data; "
                         f"use another output folder or remove {ckpt_dir}")
    state["model"] = read_checkpoint(model_path)["state_dict"]
    return state


# ---------------------------------------------------------------- tracking

def open_tracker(enabled: bool, s: Session, loader_cfg, *, params: dict[str, str], tags: dict[str, str],
                 tracking_dir: str | os.PathLike | None):
    """(tracker, uri): an MLflow RunLogger when MLflow is installed and wanted, else a NullTracker."""
    from texpress.train.tracking import NullTracker

    if not enabled:
        return NullTracker(), ""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return NullTracker(), ""
    from texpress.train.tracking import RunLogger, ensure_experiment, flatten_params, resolve_tracking

    uri, artifacts = resolve_tracking(tracking_dir)
    experiment_id = ensure_experiment(uri, s.cfg.experiment, artifacts)
    if s.run_id:
        try:
            tracker = RunLogger(uri, s.run_id)
            tracker.resume(s.step)
            return tracker, uri
        except Exception:  # the checkpoints came from another machine or store: a new run goes on
            say(f"MLflow run {s.run_id} is not in {uri}; logging the rest of the training to a new run")
    all_params = {**flatten_params("train.", s.cfg.to_dict()), **flatten_params("loader.", loader_cfg.to_dict()),
                  **flatten_params("model.", s.model_cfg.to_dict()), "world_size": "1", **params}
    tracker = RunLogger.start(uri, experiment_id, run_name=tags.get("run_name"), params=all_params, tags=tags)
    s.run_id = tracker.run_id
    return tracker, uri


# ---------------------------------------------------------------- stopping

class StopRequest:
    """Ends the loop after a checkpoint: a time limit, or the first Ctrl-C (the second one aborts)."""

    def __init__(self, time_limit: float | None) -> None:
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.reason = ""
        self._previous = None

    def __call__(self) -> bool:
        if not self.reason and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "time limit"
        return bool(self.reason)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _interrupt(self, signum, frame) -> None:
        if self.reason == "interrupted":
            raise KeyboardInterrupt
        self.reason = "interrupted"
        say("interrupted: stopping after this step with a checkpoint (Ctrl-C again to abort)")


# ---------------------------------------------------------------- the run

def _data(s: Session, loader_cfg, images: Path | None, shards: str | None, val: Path | None):
    """(batches from s.step on, validation items)."""
    if images is not None:
        from texpress.data.device_crops import DeviceCrops, val_images

        crops, skipped = DeviceCrops.from_folder(images, device=s.device, patch_size=loader_cfg.patch_size,
                                                 batch_size=loader_cfg.batch_size, seed=s.data_seed)
        say(f"{len(crops.images)} training photos on {s.device} ({crops.megabytes:.0f} MB)"
            + (f", {len(skipped)} skipped (e.g. {skipped[0][0].name}: {skipped[0][1]})" if skipped else ""))
        items = val_images(val, limit=s.cfg.val_images, max_side=loader_cfg.val_max_side) if val else []
        return crops.stream(s.step), items
    from itertools import islice

    from texpress.data.loader import list_shards, make_train_loader, make_val_loader

    loader = make_train_loader(list_shards(shards, "train"), patch_size=loader_cfg.patch_size,
                               batch_size=loader_cfg.batch_size, num_workers=loader_cfg.num_workers,
                               shuffle_buffer=loader_cfg.shuffle_buffer, batches_per_epoch=loader_cfg.batches_per_epoch,
                               seed=s.data_seed, rank=0, world_size=1, start_step=s.step)

    def batches():
        while True:
            yield from loader

    items: list = []
    val_shards = list_shards(shards, "val") if s.cfg.val_images > 0 else []
    if val_shards:
        items = list(islice(make_val_loader(val_shards, max_side=loader_cfg.val_max_side, rank=0, world_size=1),
                            s.cfg.val_images))
    return batches(), items


def _check_inputs(images, shards, out_dir: Path) -> None:
    if (images is None) == (shards is None):
        raise ConfigError("give one of --images (a folder of photos) or --shards (a texpress dataset)")
    if images is not None and not Path(images).is_dir():
        raise InputError(f"{images}: no such folder of images")
    if shards is not None:
        from texpress.data.loader import list_shards

        if not list_shards(str(shards), "train"):
            raise InputError(f"{shards}: no training shards")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output exists and is not a folder")


def train_single(cfg: TrainConfig, loader_cfg, out_dir: str | os.PathLike, *, images: str | os.PathLike | None = None,
                 shards: str | None = None, val: str | os.PathLike | None = None,
                 init_from: str | os.PathLike | None = None, device: str | None = None, amp: bool = False,
                 time_limit: float | None = None, mlflow: bool = True,
                 tracking_dir: str | os.PathLike | None = None) -> SingleOutcome:
    """Train in this process; resume from OUT/checkpoints when they are there."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    images = Path(images) if images is not None else None
    _check_inputs(images, shards, out_dir)
    dev = pick_device(device)
    amp_dtype = torch.bfloat16 if amp else None
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    init = read_init(init_from) if init_from is not None else None
    data_version = _data_version(images, shards)
    init_id = (init.get("fingerprint") or init["source"]) if init is not None else None
    identity = run_identity(cfg, loader_cfg, data_version, init_id, amp)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    state = load_resume(ckpt_dir, identity)
    s = open_session(cfg, device=dev, data_seed=loader_cfg.seed, state=state, init=None if state else init)
    del state
    from texpress.train.tracking import git_commit

    commit = git_commit()
    tags = {"data_version": data_version, "git_commit": commit or "unknown", "preset": s.preset,
            "backend": "torch", "device": str(dev), "output": str(out_dir.resolve()), "run_identity": identity}
    params = {"init_from": s.warm_start or "none", "data": str(images or shards), "amp": str(amp)}
    tracker, uri = open_tracker(mlflow, s, loader_cfg, params=params, tags=tags, tracking_dir=tracking_dir)
    try:
        return _run(s, loader_cfg, out_dir, ckpt_dir, identity, images, shards, val, tracker, uri, amp_dtype,
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


def _run(s: Session, loader_cfg, out_dir, ckpt_dir, identity, images, shards, val, tracker, uri, amp_dtype,
         time_limit, tags, started) -> SingleOutcome:
    from texpress.train.validation import log_validation, write_final

    cfg = s.cfg
    batches, val_items = _data(s, loader_cfg, images, shards, val)
    if cfg.val_images > 0 and not val_items:
        say("no validation images (--val DIR, or the val split of the shards): validation is skipped")
    say(f"training {cfg.total_steps} steps ({cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial) on "
        f"{s.device}, {loader_cfg.batch_size} x {loader_cfg.patch_size}-px crops, {s.where()}"
        + (f"; MLflow run {s.run_id}" if s.run_id else ""))

    def checkpoint(step: int, stats: dict) -> None:
        save_checkpoint_pair(s, ckpt_dir, identity, cfg.keep_checkpoints)

    validate = (lambda step: log_validation(s, val_items, tracker, step)) if val_items else None
    with StopRequest(time_limit) as stop:
        result = run_steps(s, batches, Hooks(tracker=tracker, validate=validate, checkpoint=checkpoint,
                                             should_stop=stop), amp=amp_dtype)
    common = dict(out_dir=out_dir, step=s.step, mlflow_run_id=s.run_id or "", tracking_uri=uri, device=str(s.device),
                  resumed_from=s.resumed_from, throughput=result.throughput)
    if result.stopped:
        tracker.fail(f"stopped at step {s.step} ({stop.reason}); the same command resumes it", status="KILLED")
        return SingleOutcome(model_path=None, stopped=True, metrics={}, seconds=time.perf_counter() - started,
                             **common)
    meta = {"preset": s.preset, "steps": s.step, "target_bpp": cfg.target_bpp,  # run id, commit: MLflow tags
            "data_version": tags["data_version"], "backend": "torch",
            **({"lambda": cfg.fixed_lambda, "k_m": cfg.k_m} if cfg.fixed_lambda else {})}  # for encode efforts
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


# ---------------------------------------------------------------- command line

def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=Path, help="a folder of training photos (decoded once onto the device)")
    p.add_argument("--shards", help="a texpress dataset folder (needs webdataset)")
    p.add_argument("--val", type=Path, help="a folder of validation photos (with --images)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (model.ckpt, checkpoints/, ...)")
    p.add_argument("--params", type=Path, help="params.yaml whose train and loader sections are the defaults")
    p.add_argument("--preset", help="model preset when training from scratch (hific, base, lite)")
    p.add_argument("--from", dest="init_from", type=Path, help="warm start from this checkpoint")
    p.add_argument("--steps", type=int, help="total steps (rate-distortion + adversarial)")
    p.add_argument("--gan-steps", type=int, help="steps of the adversarial phase, from the total (0: none)")
    p.add_argument("--disc-warmup", type=int,
                   help="the adversarial phase's first steps train D only (the codec stays on the R-D loss)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--crop", type=int, help="side of the square training crops")
    p.add_argument("--lr", type=float, help="Adam learning rate of the codec")
    p.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--lambda", dest="fixed_lambda", type=float,
                   help="a fixed lambda: loss lambda * bpp + d (default: HiFiC target-rate control)")
    p.add_argument("--target-bpp", type=float, help="the rate control's target")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int, help="model initialisation, noise and data order")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when there is a GPU)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast for the forward passes")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds with a checkpoint")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow even when it is installed")


def configs_from_args(args: argparse.Namespace):
    from texpress.data.config import LoaderConfig
    from texpress.train.config import with_options

    if args.params is not None:
        from texpress.params import load_params

        cfg = TrainConfig.from_dict(load_params(args.params, "train"))
        loader_cfg = LoaderConfig.from_dict(load_params(args.params, "loader"))
    else:
        cfg, loader_cfg = TrainConfig(), LoaderConfig()
    return with_options(cfg, loader_cfg, preset=args.preset, steps=args.steps, gan_steps=args.gan_steps,
                        disc_warmup=args.disc_warmup, lr=args.lr, warmup=args.warmup,
                        fixed_lambda=args.fixed_lambda, target_bpp=args.target_bpp,
                        checkpoint_every=args.checkpoint_every, batch_size=args.batch_size, crop=args.crop,
                        seed=args.seed)


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


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    warnings.filterwarnings("ignore", message="Using padding='same'")
    parser = argparse.ArgumentParser(prog="python -m texpress.train.single", description=__doc__.split("\n")[0])
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        cfg, loader_cfg = configs_from_args(args)
        outcome = train_single(cfg, loader_cfg, args.output, images=args.images, shards=args.shards, val=args.val,
                               init_from=args.init_from, device=args.device, amp=args.amp,
                               time_limit=args.time_limit, mlflow=not args.no_mlflow)
    except TexpressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print("\n".join(summary_lines(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
