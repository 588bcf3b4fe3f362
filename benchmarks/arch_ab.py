"""Architecture A/B: every arm trained side by side on the same crops with the same loss
(bpp + lambda * MSE on 0-255) for the same number of steps, then coded for real on held-out images.

    .venv/bin/python benchmarks/arch_ab.py [--train DIR...] [--val DIR...] [--arms a,b,c]
        [--config NAME=model.yaml ...] [--lambdas 0.0035,0.01,0.03] [--steps N] [--device cuda]
        [--amp] [--init CKPT]

Arms: CompressAI's bmshj2018-hyperprior and mbt2018-mean (N=128, M=192), texpress presets, and any
ModelConfig as YAML. `--vr NAME` adds, for a texpress arm, one variable-rate model (the arm plus gain
units, codec.gain) trained once for steps x lambdas with a random level per image: the same total
compute as the arm's separate models, coded at the trained levels. For each arm and lambda it reports bpp from the bytes of the coded strings,
PSNR and MS-SSIM on the val images; per arm the BD-rate against both references trained in this run,
decode ms per megapixel on this machine and decoder kMAC/px. Equal steps on equal data is the fair
comparison; it says how fast an architecture learns, not where it ends after full training.

Defaults fit in about 20 minutes on 2 CPU cores (small crops, 1,500 steps, 4 arms x 3 lambdas);
larger settings for a GPU. Prints a table and writes benchmarks/results/arch_ab.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)

from texpress.codec.checkpoint import read_checkpoint, transplant  # noqa: E402
from texpress.data.device_crops import DeviceCrops  # noqa: E402
from texpress.codec.config import ModelConfig  # noqa: E402
from texpress.errors import ConfigError, TexpressError  # noqa: E402
from texpress.evaluate.bdrate import BDRateError, bd_rate, quality_axis  # noqa: E402
from texpress.evaluate.sources import centre_crop, list_images  # noqa: E402
from texpress.registry.refs import resolve_checkpoint  # noqa: E402
from texpress.train.ab.arms import DEFAULT_ARMS, REFERENCES, Arm, arm_from_name, arm_from_yaml  # noqa: E402
from texpress.train.ab.arms import decoder_kmac_per_px, n_params  # noqa: E402
from texpress.train.ab.code import code_images  # noqa: E402
from texpress.train.ab.fit import FitSettings, device_crops, fit  # noqa: E402

FAIRNESS = ("Equal steps on equal data: every arm saw the same crops in the same order with the same "
            "loss and optimiser settings; BD-rates compare learning speed at this budget, not fully "
            "trained models.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", nargs="+", default=["data/shards/train"], help="image files, folders or shard tars")
    ap.add_argument("--val", nargs="+", default=["data/shards/val"], help="held-out images to code")
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="comma list of references and presets")
    ap.add_argument("--config", action="append", default=[], help="NAME=PATH.yaml: a ModelConfig arm (repeatable)")
    ap.add_argument("--baseline", help="an arm of the run that every arm also gets a BD-rate against")
    ap.add_argument("--vr", action="append", default=[], help="NAME: a variable-rate twin of a texpress arm (repeatable)")
    ap.add_argument("--lambdas", default="0.0035,0.01,0.03", help="weights of the MSE on 0-255 values")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--val-images", type=int, default=12)
    ap.add_argument("--val-crop", type=int, default=256, help="centre crop of each val image (0: whole)")
    ap.add_argument("--max-train-images", type=int, default=0, help="0: all")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPU with AVX512-BF16, or CUDA)")
    ap.add_argument("--init", help="checkpoint whose shared tensors start every texpress arm (the same trained "
                    "transforms for all; what an arm adds, a context or gain units, starts fresh)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/arch_ab.json")
    return ap.parse_args(argv)


def load_images(paths: list[str], limit: int, crop: int) -> list[np.ndarray]:
    items, problems = list_images(paths)
    if problems:
        raise TexpressError(f"{problems[0][0]}: {problems[0][1]}")
    if limit:
        items = items[:limit]
    images = [centre_crop(item.read(), (crop, crop) if crop else None) for item in items]
    if not images:
        raise TexpressError(f"no images in {' '.join(paths)} (run `dvc repro shard`, or pass --train/--val)")
    return images


def progress(name: str, lam: float, steps: int):
    """A line every tenth of the run: long CPU runs show they are alive."""
    every = max(1, steps // 10)

    def on_step(step: int, bpp: float, mse: float) -> None:
        if (step + 1) % every == 0:
            print(f"    {name} lambda {lam:g}: step {step + 1}/{steps}, train bpp {bpp:.3f}, MSE {mse:.1f}", flush=True)

    return on_step


def start(arm: Arm, seed: int, init: dict | None):
    """The arm's model at its first step: seeded, and warm-started from `init` where given."""
    torch.manual_seed(seed)
    model = arm.build()
    if init is not None:
        transplant(model, init)
    return model


def run_arm(arm: Arm, lambdas: list[float], crops: DeviceCrops, val: list[np.ndarray], s: FitSettings,
            init: dict | None = None) -> dict:
    """Train one model per lambda from the same initial weights, code the val images with each."""
    points = []
    for lam in lambdas:
        model = start(arm, s.seed, init)
        t = fit(model, lam, crops, s, on_step=progress(arm.name, lam, s.steps))
        coded = code_images(model, val)
        points.append({"lambda": lam, **coded, **t})
        print(f"  {arm.name:<24} lambda {lam:<7g} {coded['bpp']:.3f} bpp  {coded['psnr']:.2f} dB  "
              f"MS-SSIM {coded['ms_ssim']:.4f}  {t['steps_per_s']} steps/s", flush=True)
    model = arm.build()
    return {"kind": arm.kind, "config": arm.config, "points": points, "params": n_params(model),
            "decoder_kmac_per_px": round(decoder_kmac_per_px(model), 2),
            "decode_ms_per_mpx": float(np.median([p["decode_ms_per_mpx"] for p in points])),
            "steps_per_s": float(np.median([p["steps_per_s"] for p in points]))}


def vr_arm(arm: Arm, lambdas: list[float]) -> tuple[Arm, float]:
    """The variable-rate twin of a texpress arm and its distortion weight c: level i's loss
    c * (bpp / lambda_i + MSE) is lambda_i's loss bpp + lambda_i * MSE up to a factor, so the rate
    weights are c / lambda_i (highest first) with c the lambdas' geometric mean."""
    if arm.kind == "reference":
        raise ConfigError(f"--vr {arm.name}: variable rate needs a texpress arm (a preset or a config)")
    ordered = sorted(lambdas)
    c = float(np.exp(np.mean(np.log(ordered))))
    config = {**arm.config, "rate_lambdas": [c / lam for lam in ordered]}
    ModelConfig.from_dict(config)  # one-line error for a bad combination, before any training
    return Arm(f"{arm.name}-vr", "config", config), c


def run_vr_arm(arm: Arm, lambdas: list[float], crops: DeviceCrops, val: list[np.ndarray], s: FitSettings,
               init: dict | None = None) -> dict:
    """Train the variable-rate twin once for len(lambdas) x s.steps, code the val images at each level."""
    twin, c = vr_arm(arm, lambdas)
    steps = s.steps * len(lambdas)
    model = start(twin, s.seed, init)
    t = fit(model, c, crops, replace(s, steps=steps), on_step=progress(twin.name, c, steps))
    points = []
    for i, lam in enumerate(sorted(lambdas)):
        quality = 100.0 * i / (len(lambdas) - 1)
        coded = code_images(model, val, quality=quality)
        points.append({"lambda": lam, "quality": quality, **coded, **t})
        print(f"  {twin.name:<24} quality {quality:<5g} {coded['bpp']:.3f} bpp  {coded['psnr']:.2f} dB  "
              f"MS-SSIM {coded['ms_ssim']:.4f}  {t['steps_per_s']} steps/s", flush=True)
    return {"kind": "variable-rate", "twin_of": arm.name, "config": twin.config, "points": points,
            "params": n_params(model), "decoder_kmac_per_px": round(decoder_kmac_per_px(model), 2),
            "decode_ms_per_mpx": float(np.median([p["decode_ms_per_mpx"] for p in points])),
            "steps_per_s": t["steps_per_s"]}


def bd_rates(arms: dict[str, dict], baseline: str | None) -> None:
    """Each arm's BD-rate (PSNR and MS-SSIM) in place: against each reference arm of the run, the
    --baseline arm, and for a variable-rate twin its separate models."""
    for result in arms.values():
        result["bd_rate"] = {}
        refs = [r for r in REFERENCES if r in arms]
        refs += [r for r in (baseline, result.get("twin_of")) if r and r in arms and r not in refs]
        for ref in refs:
            a, b = arms[ref]["points"], result["points"]
            entry = {}
            for metric, key in (("psnr-rgb", "psnr"), ("ms-ssim-rgb", "ms_ssim")):
                try:
                    entry[metric] = round(bd_rate([p["bpp"] for p in a], quality_axis([p[key] for p in a], metric),
                                                  [p["bpp"] for p in b], quality_axis([p[key] for p in b], metric)), 2)
                except BDRateError as exc:
                    entry[metric] = None
                    entry[f"{metric}-why"] = str(exc)
            result["bd_rate"][ref] = entry


def print_table(arms: dict[str, dict]) -> None:
    refs = list(dict.fromkeys(ref for r in arms.values() for ref in r["bd_rate"]))
    head = f"{'arm':<24} {'dec kMAC/px':>11} {'dec ms/Mpx':>10} {'steps/s':>8}"
    head += "".join(f" {'BD ' + r[:9] + ' PSNR':>20} {'MS-SSIM':>8}" for r in refs)
    print(head)
    fmt = lambda v: "n/a" if v is None else f"{v:+.1f}%"  # noqa: E731
    for name, r in arms.items():
        line = f"{name:<24} {r['decoder_kmac_per_px']:>11.1f} {r['decode_ms_per_mpx']:>10.0f} {r['steps_per_s']:>8.2f}"
        for ref in refs:
            bd = r["bd_rate"].get(ref)
            line += f" {'-':>20} {'-':>8}" if bd is None else f" {fmt(bd['psnr-rgb']):>20} {fmt(bd['ms-ssim-rgb']):>8}"
        print(line)
    print(FAIRNESS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arms = [arm_from_name(n.strip()) for n in args.arms.split(",") if n.strip()]
        arms += [arm_from_yaml(spec) for spec in args.config]
        lambdas = [float(v) for v in args.lambdas.split(",")]
        by_name = {arm.name: arm for arm in arms}
        if unknown := [n for n in args.vr if n not in by_name]:
            raise ConfigError(f"--vr {unknown[0]}: not one of this run's arms ({', '.join(by_name)})")
        twins = [by_name[n] for n in args.vr]
        if args.baseline and args.baseline not in by_name:
            raise ConfigError(f"--baseline {args.baseline}: not one of this run's arms ({', '.join(by_name)})")
        for twin in twins:
            vr_arm(twin, lambdas)
        train = load_images(args.train, args.max_train_images, 0)
        val = load_images(args.val, args.val_images, args.val_crop)
        s = FitSettings(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, warmup=args.warmup,
                        seed=args.seed, device=args.device, amp=args.amp)
        crops = device_crops(train, s)
        init = read_checkpoint(resolve_checkpoint(args.init))["state_dict"] if args.init else None
        if init is not None and (refs := [a.name for a in arms if a.kind == "reference"]):
            raise ConfigError(f"--init: the reference arm {refs[0]} has no texpress tensors to start from")
    except TexpressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(arms)} arms x {len(lambdas)} lambdas, {s.steps} steps of {s.batch} x {s.crop}px crops "
          f"from {len(crops.images)} images; coding {len(val)} val images. {FAIRNESS}", flush=True)
    start = time.perf_counter()
    results = {arm.name: run_arm(arm, lambdas, crops, val, s, init) for arm in arms}
    for twin in twins:
        results[f"{twin.name}-vr"] = run_vr_arm(twin, lambdas, crops, val, s, init)
    bd_rates(results, args.baseline)
    print_table(results)
    report = {"settings": {**vars(args), **s.__dict__, "lambdas": lambdas, "train_images": len(crops.images),
                           "val_images": len(val), "torch_threads": torch.get_num_threads(),
                           "machine": platform.processor() or platform.machine(),
                           "wall_s": round(time.perf_counter() - start, 1)},
              "note": FAIRNESS, "arms": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
