"""Model-version tags: what a registered model is, where it came from and how it scored.

    texpress.fingerprint, texpress.preset, texpress.config (JSON), texpress.{encoder,decoder}_kmac_per_px,
    texpress.{encoder,decoder}_params, texpress.steps, texpress.training_run, texpress.data_version,
    texpress.git_commit
    eval.images, eval.bpp, eval.psnr-rgb, eval.ms-ssim-rgb, eval.checkerboard, eval.texture-distance,
    eval.hf-ratio, eval.bd_rate.<baseline>.<psnr-rgb|ms-ssim-rgb>, eval.rate_delta.<baseline>.<metric>
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from texpress.codec.checkpoint import load_model, read_checkpoint
from texpress.codec.complexity import measure
from texpress.errors import TexpressError
from texpress.evaluate.curves import FIDELITY, TEXTURE

FINGERPRINT = "texpress.fingerprint"


def _fmt(value: Any) -> str | None:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else None
    return None if value is None else str(value)


def model_tags(checkpoint: str | os.PathLike, training_run: str | None,
               git_commit: str | None = None) -> dict[str, str]:
    """Tags from a checkpoint file: its identity, metadata and measured size; the commit is the training
    run's (newer checkpoints do not record it)."""
    payload = read_checkpoint(checkpoint)
    meta = payload.get("meta") or {}
    cx = measure(load_model(checkpoint))
    tags = {
        FINGERPRINT: payload["fingerprint"],
        "texpress.preset": meta.get("preset") or "custom",
        "texpress.config": json.dumps(payload["config"], sort_keys=True, separators=(",", ":")),
        "texpress.encoder_kmac_per_px": cx.encoder_kmac_per_px,
        "texpress.decoder_kmac_per_px": cx.decoder_kmac_per_px,
        "texpress.encoder_params": cx.encoder_params,
        "texpress.decoder_params": cx.decoder_params,
        "texpress.steps": meta.get("steps", 0 if meta.get("trained") is False else None),
        "texpress.training_run": training_run or meta.get("mlflow_run_id") or "none",
        "texpress.data_version": meta.get("data_version") or "unknown",
        "texpress.git_commit": git_commit or meta.get("git_commit") or "unknown",
    }
    return {k: v for k, v in ((k, _fmt(v)) for k, v in tags.items()) if v is not None}


def model_curve(summary: dict[str, Any], fingerprint: str) -> tuple[str, dict[str, Any]]:
    """(name, curve) of the model curve in an evaluation summary made with this very checkpoint."""
    for name, curve in (summary.get("curves") or {}).items():
        if curve.get("kind") != "model":
            continue
        fps = {c.get("fingerprint") for c in (curve.get("settings") or {}).get("checkpoints", [])}
        if fingerprint in fps:
            return name, curve
    raise TexpressError(f"the evaluation summary holds no curve of model {fingerprint}")


def eval_tags(summary: dict[str, Any], fingerprint: str) -> dict[str, str]:
    """`eval.*` tags from a texpress evaluation summary.json (texpress.evaluate.report)."""
    name, curve = model_curve(summary, fingerprint)
    point = next(p for p in curve["points"] if p["point"] in {c["point"] for c in curve["settings"]["checkpoints"]
                                                              if c["fingerprint"] == fingerprint})
    tags: dict[str, Any] = {"eval.images": summary.get("images", {}).get("count")}
    tags.update({f"eval.{m}": point.get(m) for m in (*FIDELITY, *TEXTURE)})
    for baseline, entry in (summary.get("bd_rate") or {}).get(name, {}).items():
        tags.update({f"eval.bd_rate.{baseline}.{m}": entry.get(m) for m in ("psnr-rgb", "ms-ssim-rgb")})
    index = curve["points"].index(point)
    for baseline, entry in (summary.get("rate_delta") or {}).get(name, {}).items():
        tags.update({f"eval.rate_delta.{baseline}.{m}": values[index] for m, values in entry.items()})
    return {k: v for k, v in ((k, _fmt(v)) for k, v in tags.items()) if v is not None}
