"""CPU training settings side by side: float32, bfloat16 autocast, channels_last, torch.compile, the
torch thread count, and the crop size, on the same model, batches and seeds in one run.

    PYTHONPATH=src python benchmarks/train_cpu.py [--photos DIR] [--from CKPT | --preset lite-vr]
        [--steps 60] [--arms fp32,bf16,bf16-cl,bf16-compile,bf16-t1,bf16-t2] [--crops 128,192,256]
        [--pixels 131072] [--held-out 8]

Setting arms: each trains `--steps` rate-distortion steps from the same start on the same batches
(8 x 128-px crops by default) and reports steps/s (after two warm-up steps, compile time apart) and
the R-D loss of the last steps and on a fixed held-out batch, so a setting that is faster but learns
less per step shows. Crop arms (bfloat16, the fastest thread count): the same pixels per step
(`--pixels`) in crops of 128, 192 and 256 px, and the held-out loss per CPU-minute. Prints a table
and writes benchmarks/results/train_cpu.json. Without --photos the sample photos are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=FutureWarning)

from texpress.codec.checkpoint import build_model, load_model  # noqa: E402
from texpress.codec.config import get_preset  # noqa: E402
from texpress.codec.discriminator import ConditionalDiscriminator  # noqa: E402
from texpress.data.device_crops import DeviceCrops  # noqa: E402
from texpress.files import write_atomic  # noqa: E402
from texpress.samples import sample_photos  # noqa: E402
from texpress.train.config import TrainConfig  # noqa: E402
from texpress.train.losses import CodecLoss  # noqa: E402
from texpress.train.rate_control import RateController  # noqa: E402
from texpress.train.train_step import build_trainables, generator_step  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "train_cpu.json"
WARMUP_STEPS = 2


def start_model(args):
    model = load_model(args.init) if args.init else build_model(get_preset(args.preset), seed=0)
    return model.train()


def crops(args, patch: int, batch: int, seed: int = 0) -> DeviceCrops:
    folder = args.photos or Path(sample_photos()[0]).parent
    source, _ = DeviceCrops.from_folder(folder, device="cpu", patch_size=patch, batch_size=batch, seed=seed)
    return source


@torch.no_grad()
def held_out_loss(model, x: torch.Tensor, loss_fn: CodecLoss, quality: float | None) -> float:
    """The R-D loss of a fixed batch in training mode's maths (noise seeded), at one rate."""
    from texpress.train.losses import weighted_rate

    torch.manual_seed(1234)
    out = model(x, quality) if model.config.variable_rate else model(x)
    terms = loss_fn(out, x)
    if "rate_weight" in out:
        rate = weighted_rate(out["likelihoods"], out["rate_weight"], x.shape[-2] * x.shape[-1])
    else:
        rate = 0.6 * terms["bpp"]
    return float(rate + terms["distortion"])


def train_arm(args, name: str, source: DeviceCrops, held: torch.Tensor, *, amp: bool, channels_last: bool = False,
              compile_model: bool = False, threads: int | None = None, seconds: float | None = None) -> dict:
    """args.steps steps (or as many as fit in `seconds`) from the same start on the same batches."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = start_model(args)
        cfg = TrainConfig(rd_steps=max(args.steps, 1), gan_steps=0, lr=args.lr, fixed_lambda=0.6, lr_decay_at=1.0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        t = build_trainables(model, ConditionalDiscriminator(model.config.latent_channels), cfg)
        compile_s = 0.0
        if compile_model:
            t0 = time.perf_counter()
            t.model = torch.compile(model)
            compile_s = -t0  # completed after the first step
        loss_fn, rate = CodecLoss(cfg.k_m), RateController(cfg.target_bpp, 0.6, 0.6)
        dtype = torch.bfloat16 if amp else None
        losses, step, timed, t_start = [], 0, 0.0, None
        while True:
            if seconds is None and step >= args.steps:
                break
            if seconds is not None and t_start is not None and time.perf_counter() - t_start >= seconds:
                break
            torch.manual_seed(step)
            x = source.batch(step).contiguous(memory_format=fmt)
            t0 = time.perf_counter()
            stats, _ = generator_step(t, x, loss_fn, rate, adversarial=False, beta=0.0, clip_grad_norm=1.0, amp=dtype)
            dt = time.perf_counter() - t0
            if compile_model and step == 0:
                compile_s += time.perf_counter()
            if step == WARMUP_STEPS - 1:
                t_start = time.perf_counter()
            elif step >= WARMUP_STEPS:
                timed += dt
            losses.append(stats["loss_rd"])
            step += 1
        timed_steps = max(1, step - WARMUP_STEPS)
        tail = losses[-max(1, len(losses) // 4):]
        return {"arm": name, "steps": step, "steps_per_s": timed_steps / timed if timed else float("nan"),
                "mpx_per_s": timed_steps * x.numel() / 3 / 1e6 / timed if timed else float("nan"),
                "loss_last_quarter": sum(tail) / len(tail),
                "held_out_loss": held_out_loss(model.eval(), held, loss_fn, 50.0 if model.config.variable_rate else None),
                "compile_s": compile_s, "threads": torch.get_num_threads(), "amp": amp,
                "channels_last": channels_last, "crop": source.patch_size, "batch": source.batch_size}
    finally:
        torch.set_num_threads(previous)


SETTING_ARMS = {
    "fp32": {"amp": False},
    "bf16": {"amp": True},
    "bf16-cl": {"amp": True, "channels_last": True},
    "bf16-compile": {"amp": True, "compile_model": True},
    "bf16-t1": {"amp": True, "threads": 1},
    "bf16-t2": {"amp": True, "threads": 2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path)
    ap.add_argument("--from", dest="init", help="start checkpoint (default: an untrained --preset)")
    ap.add_argument("--preset", default="lite-vr")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--arms", default=",".join(SETTING_ARMS))
    ap.add_argument("--crops", default="128,192,256", help="crop sides for the crop arms ('' for none)")
    ap.add_argument("--pixels", type=int, default=8 * 128 * 128, help="pixels per step in the crop arms")
    ap.add_argument("--crop-seconds", type=float, default=60.0, help="training time of each crop arm")
    ap.add_argument("--held-out", type=int, default=8, help="held-out 256-px crops for the loss")
    args = ap.parse_args()

    held = crops(args, 256, args.held_out, seed=99).batch(0)
    base = crops(args, 128, 8)
    rows = []
    for name in [a for a in args.arms.split(",") if a]:
        rows.append(train_arm(args, name, base, held, **SETTING_ARMS[name]))
        print(f"{name:14} {rows[-1]['steps_per_s']:.3g} steps/s  loss {rows[-1]['loss_last_quarter']:.4f}  "
              f"held-out {rows[-1]['held_out_loss']:.4f}", flush=True)
    for side in [int(c) for c in args.crops.split(",") if c]:
        batch = max(1, round(args.pixels / side**2))
        rows.append(train_arm(args, f"crop{side}x{batch}", crops(args, side, batch), held, amp=True,
                              seconds=args.crop_seconds))
        print(f"crop {side} x {batch}: {rows[-1]['steps']} steps in {args.crop_seconds:.0f} s, held-out "
              f"{rows[-1]['held_out_loss']:.4f}", flush=True)

    ref = next((r for r in rows if r["arm"] == "fp32"), rows[0])
    print(f"\nCPU training settings: {args.init or args.preset}, {args.steps} steps per setting arm, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"{'arm':<16} {'threads':>7} {'steps':>6} {'steps/s':>8} {'x fp32':>7} {'Mpx/s':>7} {'loss tail':>10} "
          f"{'held-out':>9} {'compile s':>9}")
    for r in rows:
        print(f"{r['arm']:<16} {r['threads']:>7} {r['steps']:>6} {r['steps_per_s']:>8.3g} "
              f"{r['steps_per_s'] / ref['steps_per_s']:>7.2f} {r['mpx_per_s']:>7.3g} {r['loss_last_quarter']:>10.4f} "
              f"{r['held_out_loss']:>9.4f} {r['compile_s']:>9.1f}")
    payload = {"benchmark": "train_cpu", "start": args.init or args.preset, "steps": args.steps,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "processor": platform.processor()},
               "rows": rows}
    write_atomic(RESULTS, (json.dumps(payload, indent=2) + "\n").encode())
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
