"""Writing an evaluation's outputs: per_image.csv, summary.json, metrics.json, one curve file per
curve, rd.csv (every curve point, one row each), rd_long.csv (the same, one row per point and
metric: what the DVC plot reads), and the figures. Every file goes to a temporary name in the
output folder and is renamed when complete.

summary.json: the config, the images, each curve with its points (fidelity, texture scores) and
settings, BD-rates of every model curve against every baseline for PSNR and MS-SSIM, and the rate
difference of each model point against each baseline at equal quality.
metrics.json: the headline numbers for `dvc metrics show` and MLflow (model points, BD-rates).
timings.csv and timings.json: encode and decode seconds per image and their means per point, and
when the run was. They are the only outputs that differ between two runs on the same inputs, so
the DVC stage leaves them out of its outputs and a re-run leaves dvc.lock as it was.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from texpress import __version__ as texpress_version
from texpress.evaluate import figures
from texpress.evaluate.baselines import library_versions
from texpress.evaluate.bdrate import (MIN_OVERLAP, QUALITY_METRICS, BDRateError, bd_rate_with_overlap, quality_axis,
                                      rate_delta_at)
from texpress.evaluate.config import EvalConfig
from texpress.evaluate.curves import CSV_COLUMNS, FIDELITY, TEXTURE, TIMING_COLUMNS, Curve, timing_means
from texpress.evaluate.runner import EvalResult
from texpress.files import write_atomic

# rd_long.csv: one row per (point, metric), the form DVC's faceted plot template reads
LONG_METRICS = {"psnr-rgb": "PSNR RGB (dB)", "ms-ssim-db": "MS-SSIM RGB (dB)", "checkerboard": "checkerboard score",
                "texture-distance": "texture-statistics distance", "hf-ratio": "high-frequency energy ratio"}
FIGURES = {"rd_psnr": "rd_psnr.png", "rd_msssim": "rd_msssim.png", "texture": "texture.png", "crops": "crops.png"}


def _clean(x: Any) -> Any:
    """NaN and infinities to None, recursively (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                         for k, v in row.items()})
    return buf.getvalue()


def bd_rates(curves: dict[str, Curve]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {baseline: {"psnr-rgb": %, "ms-ssim-rgb": %, "overlap": {metric: share of the model's
    quality range the baseline covers}, "sliver": [metrics below MIN_OVERLAP], "note": why}}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    models = [c for c in curves.values() if c.kind == "model"]
    baselines = [c for c in curves.values() if c.kind == "baseline"]
    for m in models:
        for b in baselines:
            entry: dict[str, Any] = {"overlap": {}, "sliver": []}
            notes = []
            for metric in QUALITY_METRICS:
                try:
                    entry[metric], share = bd_rate_with_overlap(
                        b.values("bpp"), quality_axis(b.values(metric), metric),
                        m.values("bpp"), quality_axis(m.values(metric), metric))
                except BDRateError as exc:
                    entry[metric] = None
                    notes.append(f"{metric}: {exc}")
                    continue
                entry["overlap"][metric] = share
                if share < MIN_OVERLAP:
                    entry["sliver"].append(metric)
                    notes.append(f"{metric}: computed on {share:.0%} of the model's quality range only (a sliver)")
            if notes:
                entry["note"] = "; ".join(notes)
            out.setdefault(m.name, {})[b.name] = entry
    return out


def rate_deltas(curves: dict[str, Curve]) -> dict[str, dict[str, dict[str, list]]]:
    """{model: {baseline: {metric: [% per model point]}}}: bits the model point needs relative to the
    baseline curve at the same quality (None where the quality is outside the baseline's range)."""
    out: dict[str, dict[str, dict[str, list]]] = {}
    for m in (c for c in curves.values() if c.kind == "model"):
        for b in (c for c in curves.values() if c.kind == "baseline"):
            entry = {}
            for metric in QUALITY_METRICS:
                vals = []
                qb = quality_axis(b.values(metric), metric)
                for p in m.points:
                    try:
                        vals.append(rate_delta_at(b.values("bpp"), qb, p["bpp"], quality_axis([p[metric]], metric)[0]))
                    except BDRateError:
                        vals.append(None)
                entry[metric] = vals
            out.setdefault(m.name, {})[b.name] = entry
    return out


def headline_metrics(curves: dict[str, Curve], bd: dict, deltas: dict, n_images: int) -> dict[str, Any]:
    """metrics.json: model points (one nested level per checkpoint when a curve has several), BD-rates
    and equal-quality rate differences, keyed `MODEL_vs_BASELINE`."""
    out: dict[str, Any] = {"images": n_images}
    keys = (*FIDELITY, *TEXTURE)
    for c in curves.values():
        if c.kind != "model":
            continue
        if len(c.points) == 1:
            out[c.name] = {k: c.points[0].get(k) for k in keys}
        else:
            out[c.name] = {p["point"]: {k: p.get(k) for k in keys} for p in c.points}
    out["bd_rate"] = {f"{m}_vs_{b}": {k: v for k, v in e.items() if k not in ("note", "sliver")}
                      for m, row in bd.items() for b, e in row.items()}
    single = {m: row for m, row in deltas.items() if len(curves[m].points) == 1}
    if single:
        out["rate_delta"] = {f"{m}_vs_{b}": {k: v[0] for k, v in e.items()} for m, row in single.items()
                             for b, e in row.items()}
    return out


def figure_target_bpp(result: EvalResult, curves: dict[str, Curve], cfg: EvalConfig) -> float:
    """figure.bpp, else the figure image's rate at the middle point of the first model curve, else 0.5."""
    if cfg.figure.bpp is not None:
        return float(cfg.figure.bpp)
    for c in curves.values():
        if c.kind == "model" and c.points:
            mid = c.points[(len(c.points) - 1) // 2]["point"]
            for r in result.records:
                if r.image == result.figure_image and r.curve == c.name and r.point == mid:
                    return r.bpp
    return 0.5


def write_outputs(out_dir: Path, result: EvalResult, curves: dict[str, Curve], cfg: EvalConfig,
                  images_in_means: list[str], dropped_points: list[str]) -> dict[str, Any]:
    """Write every output file; returns the summary dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curves").mkdir(exist_ok=True)
    write_text(out_dir / "per_image.csv", _csv_text([r.row() for r in result.records], CSV_COLUMNS))
    write_timings(out_dir, result, images_in_means)

    rd_rows = [{"curve": c.name, "kind": c.kind, "point": p["point"], "bpp": p["bpp"], "psnr-rgb": p["psnr-rgb"],
                "ms-ssim-rgb": p["ms-ssim-rgb"],
                "ms-ssim-db": quality_axis([p["ms-ssim-rgb"]], "ms-ssim-rgb")[0],
                **{m: p[m] for m in TEXTURE}} for c in curves.values() for p in c.points]
    write_text(out_dir / "rd.csv", _csv_text(rd_rows, ["curve", "kind", "point", "bpp", "psnr-rgb", "ms-ssim-rgb",
                                                        "ms-ssim-db", *TEXTURE]))
    long_rows = [{"curve": r["curve"], "kind": r["kind"], "point": r["point"], "bpp": r["bpp"], "metric": label,
                  "value": r[key]} for r in rd_rows for key, label in LONG_METRICS.items()]
    write_text(out_dir / "rd_long.csv", _csv_text(long_rows, ["curve", "kind", "point", "bpp", "metric", "value"]))
    for c in curves.values():
        write_json(out_dir / "curves" / f"{c.name}.json", c.to_file_dict())

    bd = bd_rates(curves)
    deltas = rate_deltas(curves)
    n = len(images_in_means)
    written = {}
    plotted = {k: c for k, c in curves.items() if c.points}
    if plotted:
        figures.plot_rd(plotted, out_dir / FIGURES["rd_psnr"], "psnr-rgb", n)
        figures.plot_rd(plotted, out_dir / FIGURES["rd_msssim"], "ms-ssim-rgb", n)
        figures.plot_texture(plotted, out_dir / FIGURES["texture"], n)
        written.update({k: FIGURES[k] for k in ("rd_psnr", "rd_msssim", "texture")})
    if result.figure_image is not None and len(result.figure_crops) > 1:
        target = figure_target_bpp(result, curves, cfg)
        chosen = figures.nearest_points(result.records, result.figure_image, plotted, target)
        figures.plot_crops(result.figure_crops, chosen, plotted, out_dir / FIGURES["crops"],
                           result.figure_image, target)
        written["crops"] = FIGURES["crops"]

    summary = {
        "texpress_version": texpress_version,
        "libraries": library_versions(),
        "config": cfg.to_dict(),
        "images": {"count": n, "in_means": images_in_means,
                   "read": len(result.images),
                   "sizes": {k: list(v) for k, v in result.sizes.items()},
                   "failures": [{"image": f.image, "point": f.point, "error": f.message} for f in result.failures],
                   "dropped_points": dropped_points},
        "curves": {k: {**c.to_file_dict()} for k, c in curves.items()},
        "bd_rate": bd,
        "rate_delta": deltas,
        "figure": {"image": result.figure_image,
                   "crop": None if result.figure_box is None else vars(result.figure_box)},
        "files": {"per_image": "per_image.csv", "rd": "rd.csv", "rd_long": "rd_long.csv", "metrics": "metrics.json",
                  "timings": "timings.json", "timings_per_image": "timings.csv",
                  "curves": {k: f"curves/{k}.json" for k in curves}, "figures": written},
    }
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "metrics.json", headline_metrics(curves, bd, deltas, n))
    _remove_stale(out_dir, curves, written)
    return summary


def write_timings(out_dir: Path, result: EvalResult, images_in_means: list[str]) -> None:
    """timings.csv (per image and point) and timings.json (means per point, and when)."""
    write_text(out_dir / "timings.csv", _csv_text([r.timing_row() for r in result.records], TIMING_COLUMNS))
    write_json(out_dir / "timings.json", {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                          "seconds_per_image": timing_means(result.records, images_in_means)})


def _remove_stale(out_dir: Path, curves: dict[str, Curve], figures_written: dict[str, str]) -> None:
    """Curve files and figures an earlier run left in out_dir that this run did not write: they would
    pass for this run's results."""
    for path in (out_dir / "curves").glob("*.json"):
        if path.stem not in curves:
            path.unlink(missing_ok=True)
    for key, name in FIGURES.items():
        if key not in figures_written:
            (out_dir / name).unlink(missing_ok=True)
