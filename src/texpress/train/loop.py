"""The Ray Train loop: what every worker runs (`train_loop_per_worker`).

Each worker builds the codec and the discriminator, restores the latest Ray checkpoint (after a
worker failure or a re-run of the same stored run) or warm-starts from a given checkpoint, wraps
both models for DDP, reads its own part of the training shards and runs the two phases. Rank 0
also validates, logs to MLflow and writes the checkpoints; every rank calls ray.train.report at
the same steps (it is a barrier).

A Ray checkpoint (every `checkpoint_every` steps) is a folder with `train_state.pt`: model, D, the
three optimizers and schedulers, the rate-control state, the step, the loss history and the MLflow
run id; everything is tensors and plain types and loads with weights_only=True. The final one
adds the ready-to-code `model.ckpt` (entropy coder updated), `train_metrics.json`, the curves
TSV and PNGs.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.ckpt"
METRICS_FILE = "train_metrics.json"
CURVES_FILE = "train_curves.tsv"
STATE_FORMAT = "texpress-train-state"


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validate(codec, items: list[tuple[str, torch.Tensor]], *, bitstream: bool = False,
             grid_images: int = 0) -> tuple[dict[str, float], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Mean bpp, PSNR and MS-SSIM over `items` (key, (1,3,H,W) in [0,1]).

    bitstream=False: bpp from the likelihoods of the eval-mode forward pass (quantized latents, so
    the reconstruction is what the decoder would produce). bitstream=True: real entropy coding of y
    and z (needs an updated model) and decoding from the bytes. Inputs are padded (replicate) to a
    multiple of 64 and the output is cropped back; bpp counts the bits over the original pixels."""
    from texpress.codec.model import pad_to_multiple
    from texpress.train.losses import MSE_255, bits_per_pixel, ms_ssim_any, psnr_from_mse_255

    was_training = codec.training
    codec.eval()
    device = next(codec.parameters()).device
    bpps, psnrs, msssims, pairs = [], [], [], []
    try:
        for _key, x in items:
            x = x.to(device)
            h, w = x.shape[-2:]
            xp = pad_to_multiple(x)
            if bitstream:
                enc = codec.compress(xp)
                nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
                bpp = nbytes * 8 / (h * w)
                x_hat = codec.decompress(enc["strings"], enc["shape"])["x_hat"]
            else:
                out = codec(xp)
                bpp = float(bits_per_pixel(out["likelihoods"], h * w))
                x_hat = out["x_hat"]
            x_hat = x_hat[..., :h, :w].clamp(0, 1)
            mse = float(F.mse_loss(x_hat, x)) * MSE_255
            bpps.append(bpp)
            psnrs.append(psnr_from_mse_255(mse))
            msssims.append(float(ms_ssim_any(x_hat, x)))
            if len(pairs) < grid_images:
                pairs.append((x[0].cpu(), x_hat[0].cpu()))
    finally:
        codec.train(was_training)
    n = max(1, len(bpps))
    return {"bpp": sum(bpps) / n, "psnr": sum(psnrs) / n, "ms_ssim": sum(msssims) / n, "images": len(bpps)}, pairs


def image_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], side: int = 256):
    """Originals beside reconstructions, one pair per row, centre-cropped to side x side; uint8 HxWx3."""
    from torchvision.transforms.functional import center_crop
    from torchvision.utils import make_grid

    tiles = []
    for orig, recon in pairs:
        s = min(side, *orig.shape[-2:])
        tiles += [center_crop(orig, [s, s]), center_crop(recon, [s, s])]
    s = min(t.shape[-1] for t in tiles)
    tiles = [center_crop(t, [s, s]) for t in tiles]
    grid = make_grid(tiles, nrow=2, padding=4, pad_value=1.0)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- state

def load_init(payload: dict[str, Any]):
    """(ModelConfig, model state, D state or None) from a warm-start payload read by the driver."""
    from texpress.codec.config import ModelConfig

    return ModelConfig.from_dict(payload["model_config"]), payload["model"], payload.get("disc")


def read_init(path: str | os.PathLike) -> dict[str, Any]:
    """A warm-start payload from any checkpoint: a ready-to-code model checkpoint (.ckpt or
    .safetensors), a training state file, or a Ray checkpoint folder holding one."""
    from texpress.codec.checkpoint import read_checkpoint
    from texpress.errors import CheckpointError

    path = Path(path)
    state_file = path / STATE_FILE if path.is_dir() else path
    if path.is_dir() and not state_file.is_file():
        if (path / MODEL_FILE).is_file():
            state_file = path / MODEL_FILE
        else:
            raise CheckpointError(f"{path}: folder holds neither {STATE_FILE} nor {MODEL_FILE}")
    if state_file.name == STATE_FILE or state_file.suffix == ".pt":
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{state_file}: no such checkpoint file") from None
        except Exception as exc:
            raise CheckpointError(f"{state_file}: not a readable checkpoint ({type(exc).__name__})") from None
        if isinstance(state, dict) and state.get("format") == STATE_FORMAT:
            return {"model_config": state["model_config"], "model": state["model"], "disc": state.get("disc"),
                    "source": str(path)}
    payload = read_checkpoint(state_file)
    return {"model_config": payload["config"], "model": payload["state_dict"], "disc": None, "source": str(path),
            "fingerprint": payload.get("fingerprint")}


def _say(line: str) -> None:
    """A progress line on the worker's stdout (Ray forwards it to the driver's console)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _max_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {"data": 0.0, "compute": 0.0, "compute_rd": 0.0, "compute_gan": 0.0,
                                         "log": 0.0, "val": 0.0, "checkpoint": 0.0}
        self.steps = 0

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] += seconds


# ---------------------------------------------------------------- the loop

def train_loop_per_worker(config: dict[str, Any]) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside compressai
    warnings.filterwarnings("ignore", message="Using padding='same'")  # the discriminator's 4x4 'same' conv

    import ray
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from texpress.codec.checkpoint import build_model, fingerprint, save_checkpoint
    from texpress.codec.config import ModelConfig, get_preset
    from texpress.codec.discriminator import ConditionalDiscriminator
    from texpress.data.config import LoaderConfig
    from texpress.data.loader import list_shards, make_train_loader, make_val_loader
    from texpress.train import curves
    from texpress.train.config import TrainConfig
    from texpress.train.losses import CodecLoss, load_lpips, psnr_from_mse_255
    from texpress.train.rate_control import RateController
    from texpress.train.steps import build_trainables, train_step
    from texpress.train.tracking import RunLogger, flatten_params

    cfg = TrainConfig.from_dict(config["train"])
    loader_cfg = LoaderConfig.from_dict(config["loader"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()
    total = cfg.total_steps
    started = time.perf_counter()

    # ---- restore (same stored run) or warm start (--from) or from scratch
    state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    init = None
    if state is None and config.get("init") is not None:
        init_payload = config["init"]
        if isinstance(init_payload, ray.ObjectRef):
            init_payload = ray.get(init_payload)
        init = load_init(init_payload)
    if state is not None:
        model_cfg = ModelConfig.from_dict(state["model_config"])
    elif init is not None:
        model_cfg = init[0]
    else:
        model_cfg = get_preset(cfg.preset)

    model = build_model(model_cfg, seed=cfg.seed)
    disc = ConditionalDiscriminator(model_cfg.latent_channels)
    if state is not None:
        model.load_state_dict(state["model"])
        disc.load_state_dict(state["disc"])
    elif init is not None:
        model.load_state_dict(init[1])
        if init[2] is not None:
            disc.load_state_dict(init[2])
    model.train()
    disc.train()
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    disc = ray.train.torch.prepare_model(disc)
    t = build_trainables(model, disc, cfg)

    rate = RateController(cfg.target_bpp, cfg.lambda_a, cfg.lambda_b, ema=cfg.rate_ema)
    step = 0
    history = curves.empty_history()
    resumed_from: list[int] = []
    run_id = config.get("mlflow_run_id")
    if state is not None:
        t.load_optim_state(state)
        rate.load_state_dict(state["rate"])
        step = int(state["step"])
        history = curves.truncate(state["history"], step)
        resumed_from = [*state.get("resumed_from", []), step]
        run_id = state.get("mlflow_run_id") or run_id

    lpips_model = load_lpips(cfg.lpips_weights, cfg.lpips_net).to(device) if cfg.lpips_weights else None
    loss_fn = CodecLoss(cfg.k_m, cfg.k_ms_ssim, cfg.k_p, lpips_model)

    # ---- data: each rank its own part of the training shards
    shards_root = config["shards"]
    train_shards = list_shards(shards_root, "train")

    def batches():
        # a resumed run continues with a new seed rather than replaying the batches it has seen
        loader = make_train_loader(
            train_shards, patch_size=loader_cfg.patch_size, batch_size=loader_cfg.batch_size,
            num_workers=loader_cfg.num_workers, shuffle_buffer=loader_cfg.shuffle_buffer,
            batches_per_epoch=loader_cfg.batches_per_epoch, seed=loader_cfg.seed + 1000003 * step,
            rank=rank, world_size=world)
        while True:  # every rank gets batches_per_epoch batches per epoch; epochs go on
            yield from loader

    # ---- rank 0: tracking and validation data
    tracker = None
    val_items: list = []
    if rank == 0:
        mlflow_cfg = config["mlflow"]
        if run_id:
            tracker = RunLogger(mlflow_cfg["uri"], run_id)
            tracker.set_tags({"resumed_from_step": str(step)})
        else:
            params = {**flatten_params("train.", cfg.to_dict()), **flatten_params("loader.", loader_cfg.to_dict()),
                      **flatten_params("model.", model_cfg.to_dict()),
                      "world_size": str(world), "shards": str(shards_root),
                      "init_from": str(init_payload.get("source")) if init is not None else "none"}
            tracker = RunLogger.start(mlflow_cfg["uri"], mlflow_cfg["experiment_id"], run_name=config.get("run_name"),
                                      params=params, tags=config.get("tags", {}))
            run_id = tracker.run_id
        if cfg.val_images > 0:
            val_shards = list_shards(shards_root, "val")
            if val_shards:
                val_items = list(islice(make_val_loader(val_shards, max_side=loader_cfg.val_max_side, rank=0,
                                                        world_size=1), cfg.val_images))
            if not val_items:
                _say("warning: no validation images in the val split; validation is skipped")

    def run_validation(at_step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics, pairs = validate(t.codec, val_items, grid_images=cfg.grid_images)
        tracker.log_metrics({"val/bpp": metrics["bpp"], "val/psnr": metrics["psnr"], "val/ms_ssim": metrics["ms_ssim"]},
                            at_step)
        tracker.flush()
        if pairs:
            tracker.log_image(image_grid(pairs), f"val/grid_step{at_step:07d}.png")
        timer.add("val", time.perf_counter() - t0)
        return metrics

    def state_payload() -> dict[str, Any]:
        return {"format": STATE_FORMAT, "step": step, "model_config": model_cfg.to_dict(), **t.state_dict(),
                "rate": rate.state_dict(), "history": history, "mlflow_run_id": run_id,
                "resumed_from": resumed_from}

    def report(metrics: dict[str, Any], files: dict[str, Any] | None, dir_name: str) -> None:
        """Rank 0 reports the checkpoint, the others only metrics; then every rank waits until Ray
        Train has committed it (the controller collects reports asynchronously: without the wait a
        failure right after a report could lose that checkpoint)."""
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="texpress-ckpt-"))
            try:
                torch.save(state_payload(), tmp / STATE_FILE)
                for name, write in (files or {}).items():
                    write(tmp / name)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)),
                                 checkpoint_dir_name=dir_name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)

    # ---- train
    timer = _Timer()
    steps_run = 0
    window: dict[str, float] = {}
    window_n = 0
    window_t0 = time.perf_counter()
    last: dict[str, float] = {}
    it = batches()
    if rank == 0:
        where = f"resuming at step {step}" if resumed_from else "from scratch" if init is None else "warm start"
        _say(f"training {total} steps ({cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial) on {world} "
             f"worker(s), {where}; MLflow run {run_id}")
    while step < total:
        t0 = time.perf_counter()
        x = next(it).to(device, non_blocking=True)
        t1 = time.perf_counter()
        stats = train_step(t, x, step, cfg, loss_fn, rate)
        t2 = time.perf_counter()
        step += 1
        steps_run += 1
        timer.add("data", t1 - t0)
        timer.add("compute", t2 - t1)
        timer.add("compute_rd" if step <= cfg.rd_steps else "compute_gan", t2 - t1)
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {stats}")
        stats["psnr"] = psnr_from_mse_255(stats["mse"])
        last = stats
        if rank == 0:
            curves.append(history, step, stats)
            names = ("bpp", "mse", "psnr", "loss_rd", "loss_g", "loss_d", "d_real", "d_fake", "lambda", "distortion",
                     "rate_loss", "aux", "lr", "ms_ssim", "lpips", "loss_adv")
            tracker.log_metrics({f"train/{k}": stats[k] for k in names if k in stats}, step)
            for k in ("bpp", "psnr", "loss_rd"):
                window[k] = window.get(k, 0.0) + stats[k]
            window_n += 1
            if step % cfg.log_every == 0 or step == total:
                tracker.flush()
                speed = window_n / max(1e-9, time.perf_counter() - window_t0)
                phase = "rd" if step <= cfg.rd_steps else "gan"
                extra = f" D(x)={stats['d_real']:.2f} D(x')={stats['d_fake']:.2f}" if "d_real" in stats else ""
                _say(f"step {step}/{total} [{phase}] bpp {window['bpp'] / window_n:.3f} "
                     f"psnr {window['psnr'] / window_n:.2f} loss_rd {window['loss_rd'] / window_n:.4f} "
                     f"lambda {stats['lambda']:.4g}{extra} ({speed:.2f} steps/s)")
                window, window_n, window_t0 = {}, 0, time.perf_counter()
            if val_items and step % cfg.val_every == 0 and step < total:
                run_validation(step)
        timer.add("log", time.perf_counter() - t2)
        if step % cfg.checkpoint_every == 0 and step < total:
            t3 = time.perf_counter()
            report({"step": step, "phase": "rd" if step <= cfg.rd_steps else "gan", "bpp": stats["bpp"],
                    "psnr": stats["psnr"], "loss_rd": stats["loss_rd"], "mlflow_run_id": run_id or ""},
                   None, f"checkpoint_{step:07d}")
            timer.add("checkpoint", time.perf_counter() - t3)

    # ---- the end: per-rank summary, final validation, ready-to-code checkpoint
    codec = t.codec
    info = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "steps_run": steps_run,
            "rd_steps_run": max(0, min(step, cfg.rd_steps) - (step - steps_run)),
            "samples": steps_run * loader_cfg.batch_size, **{f"{k}_s": v for k, v in timer.totals.items()},
            "max_rss_mb": _max_rss_mb(resource.RUSAGE_SELF),
            "max_rss_children_mb": _max_rss_mb(resource.RUSAGE_CHILDREN),
            "fingerprint": fingerprint(codec), "seconds": time.perf_counter() - started}
    ranks = [None] * world
    if world > 1:
        dist.all_gather_object(ranks, info)
    else:
        ranks = [info]

    metrics: dict[str, Any] = {"step": step, "done": True, "mlflow_run_id": run_id or "", "world_size": world,
                               "resumed_from": resumed_from, "ranks": ranks,
                               "identical_models": len({r["fingerprint"] for r in ranks}) == 1}
    files: dict[str, Any] = {}
    if rank == 0:
        if last:
            metrics.update({"train_bpp": last["bpp"], "train_psnr": last["psnr"], "train_loss_rd": last["loss_rd"]})
        estimate = {}
        if val_items:
            estimate = run_validation(step)
        meta = {"preset": cfg.preset, "steps": step, "target_bpp": cfg.target_bpp, "mlflow_run_id": run_id or "",
                "data_version": str(config.get("tags", {}).get("data_version", "")),
                "git_commit": str(config.get("tags", {}).get("git_commit", ""))}
        ready = Path(tempfile.mkdtemp(prefix="texpress-final-"))
        try:
            model_fp = save_checkpoint(codec, ready / MODEL_FILE, meta=meta)  # update(force=True) + atomic write
            final: dict[str, float] = {}
            if val_items:
                real, _ = validate(codec, val_items, bitstream=True)
                final = {"val_bpp": real["bpp"], "val_psnr": real["psnr"], "val_ms_ssim": real["ms_ssim"],
                         "val_bpp_estimate": estimate["bpp"], "val_images": real["images"]}
                tracker.log_metrics({"final/bpp": real["bpp"], "final/psnr": real["psnr"],
                                     "final/ms_ssim": real["ms_ssim"]}, step)
            metrics.update(final)
            metrics["model_fingerprint"] = model_fp
            summary = {**final, "steps": step, "train_bpp": metrics.get("train_bpp"),
                       "train_psnr": metrics.get("train_psnr"), "model_fingerprint": model_fp,
                       "mlflow_run_id": run_id or ""}
            curve_dir = ready / "curves"
            pngs = curves.plot_curves(history, curve_dir, rd_steps=cfg.rd_steps if cfg.gan_steps else None,
                                      target_bpp=cfg.target_bpp)
            curves.write_tsv(history, ready / CURVES_FILE)
            (ready / METRICS_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            for png in pngs:
                tracker.log_artifact(png, "curves")
            tracker.log_artifact(ready / CURVES_FILE, "curves")
            tracker.log_artifact(ready / METRICS_FILE)
            tracker.log_artifact(ready / MODEL_FILE, "model")
            tracker.set_tags({"model_fingerprint": model_fp})
            tracker.finish("FINISHED")

            def copier(src: Path):
                return lambda dst: shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)

            files = {name: copier(ready / name) for name in (MODEL_FILE, METRICS_FILE, CURVES_FILE, "curves")}
            report(metrics, files, f"checkpoint_{step:07d}_final_{int(time.time())}")
        finally:
            shutil.rmtree(ready, ignore_errors=True)
    else:
        report(metrics, None, "")
