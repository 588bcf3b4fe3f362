"""What the checkerboard context saves in a trained checkerboard model: the bits of y (from the
entropy model's likelihoods, the same rounded latents) with the context's means and scales for the
non-anchors, against the hyperprior's alone, at several qualities.

    PYTHONPATH=src python benchmarks/context_saving.py [--model lite-vr] [--images DIR] [--max-images 20]

An ablation on one trained model, not an equal-steps A/B: the hyperprior part was trained beside the
context. Prints a table and writes benchmarks/results/context_saving.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from texpress.codec.api import Codec, to_tensor
from texpress.codec.context import anchor_mask
from texpress.codec.imageio import IMAGE_SUFFIXES
from texpress.samples import sample_photos

RESULTS = Path(__file__).parent / "results" / "context_saving.json"


def y_bits(model, x: torch.Tensor, quality: float | None) -> tuple[float, float]:
    """(bits with the context, bits with the hyperprior alone) of y for one padded image."""
    with torch.no_grad():
        y = model.encoder(x)
        z_hat, _ = model.entropy_bottleneck(model.h_a(y))
        side = model.side_params(z_hat)
        gain = model.gain(model.rate_position(quality))
        g = 1.0 if gain is None else gain.float()
        scales, means = model.coding_params(side, gain)
        anchors = anchor_mask(*y.shape[-2:])
        y_g = y * g
        y_hat_a = torch.where(anchors, (torch.round(y_g - means) + means) / g, 0.0)
        scales_n, means_n = model.coding_params(model.context_params(y_hat_a, side), gain)
        gc = model.gaussian_conditional

        def bits(s: torch.Tensor, mu: torch.Tensor) -> float:
            lk = gc.likelihood_lower_bound(gc._likelihood(torch.round(y_g - mu) + mu, s, mu))
            return float(-torch.log2(lk).sum())

        return (bits(torch.where(anchors, scales, scales_n), torch.where(anchors, means, means_n)),
                bits(scales, means))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lite-vr")
    ap.add_argument("--images", type=Path)
    ap.add_argument("--max-images", type=int, default=20)
    ap.add_argument("--qualities", default="0,50,100")
    args = ap.parse_args()
    codec = Codec.from_checkpoint(args.model)
    if codec.config.entropy != "checkerboard":
        raise SystemExit(f"error: {args.model} has no checkerboard context")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if args.images \
        else sample_photos()
    images = [to_tensor(np.asarray(Image.open(p).convert("RGB"))) for p in files[:args.max_images]]
    qualities = [float(q) for q in args.qualities.split(",")] if codec.config.variable_rate else [None]
    rows = []
    for q in qualities:
        with_ctx, without = map(sum, zip(*(y_bits(codec.model, x, q) for x in images)))
        rows.append({"quality": q, "bits_context": with_ctx, "bits_hyperprior": without,
                     "saving_percent": 100 * (1 - with_ctx / without)})
        print(f"quality {q}: y {with_ctx:,.0f} bits with the context, {without:,.0f} with the hyperprior alone: "
              f"{rows[-1]['saving_percent']:.1f} % saved")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model": args.model, "images": len(images), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
