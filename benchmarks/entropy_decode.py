"""Decode time of the three entropy models side by side in one run: lite-vr's architecture with the
mean-scale hyperprior, the checkerboard (lite-vr itself) and ELIC's channel groups, on the 768x512 photo
of benchmarks/codec_speed.py, one torch thread, best of N (the arms in turn, round robin).

    .venv/bin/python benchmarks/entropy_decode.py [--repeats 5] [--quality 50] [--threads 1]

Each arm is lite-vr's shipped weights under its entropy model (codec.checkpoint.transplant): the
transforms and gains are the same, so the symbols have trained statistics; the channel-groups context
starts at zero (its decode work does not depend on its weights). Prints a table and writes
benchmarks/results/entropy_decode.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=FutureWarning)

from texpress.codec.api import Codec  # noqa: E402
from texpress.codec.checkpoint import build_model, read_checkpoint, transplant  # noqa: E402
from texpress.codec.complexity import measure  # noqa: E402
from texpress.codec.config import get_preset  # noqa: E402
from texpress.codec.shipped import by_name  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from codec_speed import HEIGHT, WIDTH, test_photo  # noqa: E402

ARMS = ("hyperprior", "checkerboard", "channel-groups")
BASE = "lite-vr"


def codec_for(entropy: str, state: dict) -> Codec:
    model = build_model(get_preset(BASE).replace(entropy=entropy), seed=0)
    transplant(model, state)
    model.eval().update(force=True)
    return Codec(model)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quality", type=float, default=50.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/entropy_decode.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    entry = by_name(BASE)
    if entry is None:
        print(f"error: the shipped model {BASE} is not in this checkout", file=sys.stderr)
        return 2
    state = read_checkpoint(entry.path)["state_dict"]
    rgb = test_photo()
    codecs = {entropy: codec_for(entropy, state) for entropy in ARMS}
    files = {entropy: codec.compress(rgb, quality=args.quality) for entropy, codec in codecs.items()}
    decode: dict[str, list[float]] = {entropy: [] for entropy in ARMS}
    latent: dict[str, list[float]] = {entropy: [] for entropy in ARMS}
    for entropy in ARMS:  # warm-up: allocator and oneDNN primitive caches
        codecs[entropy].decompress(files[entropy])
    for _ in range(args.repeats):  # round robin: a burst of load on this shared machine hits every arm
        for entropy in ARMS:
            codec, data = codecs[entropy], files[entropy]
            t = time.perf_counter()
            codec.decompress(data)
            decode[entropy].append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.open(data).latent()
            latent[entropy].append(time.perf_counter() - t)
    rows = {}
    for entropy in ARMS:
        cx = measure(codecs[entropy].model)
        rows[entropy] = {"decode_ms": round(min(decode[entropy]) * 1e3, 1),
                         "latent_decode_ms": round(min(latent[entropy]) * 1e3, 1),
                         "bytes": len(files[entropy]), "passes": codecs[entropy].open(files[entropy]).header.passes,
                         "context_kmac_per_px": round(cx.context_kmac_per_px, 3),
                         "decoder_kmac_per_px": round(cx.decoder_kmac_per_px, 3)}
    ref = rows["hyperprior"]["decode_ms"]
    print(f"{BASE} architecture, {WIDTH}x{HEIGHT}, quality {args.quality:g}, {args.threads} thread(s), "
          f"best of {args.repeats}")
    print(f"{'entropy':<16} {'decode ms':>10} {'vs hyper':>9} {'y ms':>8} {'passes':>7} {'bytes':>7} "
          f"{'ctx kMAC/px':>12} {'dec kMAC/px':>12}")
    for name, r in rows.items():
        print(f"{name:<16} {r['decode_ms']:>10.1f} {r['decode_ms'] / ref - 1:>+9.1%} {r['latent_decode_ms']:>8.1f} "
              f"{r['passes']:>7} {r['bytes']:>7} {r['context_kmac_per_px']:>12.2f} {r['decoder_kmac_per_px']:>12.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**vars(args), "base": BASE, "width": WIDTH, "height": HEIGHT,
                                            "torch_threads": torch.get_num_threads(),
                                            "machine": platform.processor() or platform.machine()},
                               "arms": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
