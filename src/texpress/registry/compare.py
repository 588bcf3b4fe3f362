"""The side-by-side evaluation behind a promotion: the candidate, the champion (when there is one)
and the gate's anchor codec coded on the same fixed image set, in one texpress.evaluate.run.Evaluation
(same code, same images, same crop, same seed), plus decode timings that alternate the two models.

Nothing here decides; texpress.registry.gate does, from the `Comparison` this returns."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.report import rate_deltas
from texpress.evaluate.run import Evaluation, load_items
from texpress.evaluate.sources import centre_crop
from texpress.registry.config import RegistryConfig
from texpress.registry.store import RegistryError

CANDIDATE, CHAMPION = "candidate", "champion"


@dataclass
class Comparison:
    """Measured numbers, by curve label (candidate, champion, the anchor baseline)."""

    anchor: str
    curves: dict[str, list[dict[str, Any]]]  # label -> points (bpp, psnr-rgb, ms-ssim-rgb, texture scores)
    vs_anchor: dict[str, dict[str, list[float | None]]]  # model label -> metric -> % bits vs anchor per point
    decode_ms_per_mpx: dict[str, float]
    images: list[str]
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "images": self.images, "failures": self.failures, "curves": self.curves,
                "rate_delta_vs_anchor": self.vs_anchor, "decode_ms_per_mpx": self.decode_ms_per_mpx}


def eval_config(cfg: RegistryConfig) -> EvalConfig:
    gate = cfg.gate
    return EvalConfig(baselines=(gate.anchor,), qualities={gate.anchor: gate.anchor_qualities}, crop=cfg.crop,
                      max_images=cfg.max_images, mlflow=False)


def compare(candidate: str | os.PathLike, champion: str | os.PathLike | None, cfg: RegistryConfig,
            images: list[str] | None = None, on_error: Callable[[str, str], None] | None = None) -> Comparison:
    """Evaluate the candidate (and the champion) against the anchor on `images` (default cfg.images)."""
    ecfg = eval_config(cfg)
    items, _ = load_items(list(images or cfg.images), cfg.max_images, on_error)
    if not items:
        raise RegistryError(f"no images to evaluate the gate on ({', '.join(images or cfg.images)})")
    specs = [ModelSpec(CANDIDATE, Path(candidate))] + ([ModelSpec(CHAMPION, Path(champion))] if champion else [])
    evaluation = Evaluation.prepare(items, specs, ecfg)
    torch.manual_seed(cfg.seed)
    evaluation.run(on_error)
    kept, curves = evaluation.images, evaluation.curves
    lost = [k for k in evaluation.dropped if k.split("/")[0] in (CANDIDATE, CHAMPION)]
    if lost or not kept:
        raise RegistryError(f"the gate's evaluation failed ({', '.join(lost) or 'no image coded at every point'})")
    deltas = rate_deltas(curves)
    vs_anchor = {label: row[ecfg.baselines[0]] for label, row in deltas.items()}
    speed = decode_speed([p for p in evaluation.points if p.kind == "model"], [i for i in items if i.name in kept],
                         ecfg.crop, cfg.gate.speed_repeats)
    return Comparison(cfg.gate.anchor, {k: c.points for k, c in curves.items()}, vs_anchor, speed, kept,
                      [f"{f.image}: {f.message}" for f in evaluation.result.failures])


def decode_speed(points: list, items: list, crop: tuple[int, int] | None, repeats: int) -> dict[str, float]:
    """Decode ms per megapixel of each model point, timed side by side: for every image, after one
    untimed warm-up decode each, the models decode in turn (ABAB...) so machine load hits both alike;
    the fastest of the repeats per image (load only ever adds time), summed over images."""
    totals = {p.curve: 0.0 for p in points}
    pixels = 0
    for item in items:
        rgb = centre_crop(item.read(), crop)
        pixels += rgb.shape[0] * rgb.shape[1]
        streams = {p.curve: p.encode(rgb) for p in points}
        times: dict[str, list[float]] = {p.curve: [] for p in points}
        for p in points:
            p.decode(streams[p.curve])
        for _ in range(repeats):
            for p in points:
                t0 = time.perf_counter()
                p.decode(streams[p.curve])
                times[p.curve].append(time.perf_counter() - t0)
        for label, ts in times.items():
            totals[label] += min(ts)
    return {label: 1e3 * s / (pixels / 1e6) for label, s in totals.items()}
