"""The step loop, shared by the Ray workers and the single-process trainer.

Each step: the next batch to the device, the torch seed of (seed, step, rank) (so the
quantization noise of a resumed run is that of the uninterrupted one), `train_step`, a check that
every loss is finite, the history and the metrics (rank 0), a progress line with the throughput
(steps/s and megapixels/s over all ranks) every `log_every` steps, validation every `val_every`
steps (rank 0) and a checkpoint every `checkpoint_every` steps (every rank: under Ray it is a
barrier). `should_stop` (a time limit, Ctrl-C) ends the loop early after a checkpoint.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from texpress.train import curves
from texpress.train.losses import psnr_from_mse_255
from texpress.train.state import Session, step_seed
from texpress.train.train_step import train_step

LOGGED = ("bpp", "mse", "psnr", "loss_rd", "loss_g", "loss_d", "d_real", "d_fake", "lambda", "distortion",
          "rate_loss", "aux", "lr", "ms_ssim", "lpips", "loss_adv", "distill", "distill_mse", "distill_feature")


def say(line: str) -> None:
    """A progress line on stdout (Ray forwards a worker's stdout to the driver's console)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Timer:
    """Seconds spent per part of the loop, for the end-of-run summary."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {"data": 0.0, "compute": 0.0, "compute_rd": 0.0, "compute_gan": 0.0,
                                         "log": 0.0, "val": 0.0, "checkpoint": 0.0}

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] += seconds


@dataclass
class LoopResult:
    last: dict[str, float]
    steps_run: int
    stopped: bool  # ended early by should_stop (a checkpoint was written)
    timer: Timer
    throughput: dict[str, float] = field(default_factory=dict)  # steps/s, Mpx/s of data loading + steps


@dataclass
class Hooks:
    """What the caller does around the steps. validate(step) runs on rank 0 only;
    checkpoint(step, stats) on every rank; should_stop() is asked after every step."""

    tracker: Any = None
    validate: Callable[[int], Any] | None = None
    checkpoint: Callable[[int, dict], None] | None = None
    should_stop: Callable[[], bool] | None = None


def _finite(stats: dict[str, float], step: int) -> None:
    bad = sorted(k for k, v in stats.items() if not math.isfinite(v))
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step} (training diverged; "
                                 f"try a lower learning rate)")


class _Window:
    """Means of a few stats and the speed since the last progress line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.t0 = time.perf_counter()

    def add(self, stats: dict[str, float]) -> None:
        for k in ("bpp", "psnr", "loss_rd"):
            self.sums[k] = self.sums.get(k, 0.0) + stats[k]
        self.n += 1

    def line(self, s: Session, stats: dict[str, float], mpx_per_step: float) -> str:
        speed = self.n / max(1e-9, time.perf_counter() - self.t0)
        phase = s.cfg.phase(s.step - 1)  # s.step steps are done: the last one was s.step - 1
        extra = f" D(x)={stats['d_real']:.2f} D(x')={stats['d_fake']:.2f}" if "d_real" in stats else ""
        mean = {k: v / self.n for k, v in self.sums.items()}
        return (f"step {s.step}/{s.cfg.total_steps} [{phase}] bpp {mean['bpp']:.3f} psnr {mean['psnr']:.2f} "
                f"loss_rd {mean['loss_rd']:.4f} lambda {stats['lambda']:.4g}{extra} "
                f"({speed:.2f} steps/s, {speed * mpx_per_step:.3g} Mpx/s)")


def run_steps(s: Session, batches: Iterator[torch.Tensor], hooks: Hooks, *, rank: int = 0, world: int = 1,
              amp: torch.dtype | None = None, channels_last: bool = False) -> LoopResult:
    """Train from s.step to s.cfg.total_steps (or until hooks.should_stop()); the batches in
    channels_last order when the models are (the single-process trainer's CPU default)."""
    cfg, total = s.cfg, s.cfg.total_steps
    timer, window = Timer(), _Window()
    last: dict[str, float] = {}
    steps_run, stopped, mpx_per_step = 0, False, 0.0
    non_blocking = s.device.type == "cuda"
    while s.step < total:
        t0 = time.perf_counter()
        x = next(batches).to(s.device, non_blocking=non_blocking)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        mpx_per_step = x.shape[0] * x.shape[-2] * x.shape[-1] * world / 1e6
        t1 = time.perf_counter()
        torch.manual_seed(step_seed(cfg.seed, s.step, rank))
        stats = train_step(s.t, x, s.step, cfg, s.loss_fn, s.rate, amp=amp, distill=s.distiller)
        t2 = time.perf_counter()
        s.step += 1
        steps_run += 1
        timer.add("data", t1 - t0)
        timer.add("compute", t2 - t1)
        timer.add("compute_rd" if cfg.phase(s.step - 1) == "rd" else "compute_gan", t2 - t1)
        _finite(stats, s.step)
        stats["psnr"] = psnr_from_mse_255(stats["mse"])
        last = stats
        if rank == 0:
            curves.append(s.history, s.step, stats)
            if hooks.tracker is not None:
                hooks.tracker.log_metrics({f"train/{k}": stats[k] for k in LOGGED if k in stats}, s.step)
            window.add(stats)
            if s.step % cfg.log_every == 0 or s.step == total:
                if hooks.tracker is not None:
                    hooks.tracker.flush()
                say(window.line(s, stats, mpx_per_step))
                window = _Window()
            if hooks.validate is not None and s.step % cfg.val_every == 0 and s.step < total:
                t3 = time.perf_counter()
                hooks.validate(s.step)
                timer.add("val", time.perf_counter() - t3)
        timer.add("log", time.perf_counter() - t2)
        stop = hooks.should_stop is not None and hooks.should_stop() and s.step < total
        if hooks.checkpoint is not None and s.step < total and (s.step % cfg.checkpoint_every == 0 or stop):
            t3 = time.perf_counter()
            hooks.checkpoint(s.step, stats)
            timer.add("checkpoint", time.perf_counter() - t3)
        if stop:
            stopped = True
            break
    busy = timer.totals["data"] + timer.totals["compute"]  # validation, logging and checkpoints left out
    throughput = {}
    if busy > 0:
        throughput = {"steps_per_s": steps_run / busy, "mpx_per_s": steps_run * mpx_per_step / busy}
    return LoopResult(last, steps_run, stopped, timer, throughput)
