"""The evaluation's commands: `texpress eval run`, `texpress eval bd-rate`, `texpress eval baselines`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from texpress.console import EXIT_FAILED_ITEMS, fail, out_console, report_item_error, warn
from texpress.codec.refine import check_effort
from texpress.errors import ConfigError, TexpressError
from texpress.evaluate.baselines import BASELINES
from texpress.evaluate.bdrate import QUALITY_METRICS, bd_rate_curves
from texpress.evaluate.config import EvalConfig, ModelSpec, parse_baselines
from texpress.evaluate.curves import load_curve
from texpress.evaluate.display import print_summary, progress_bar
from texpress.evaluate.run import run_eval
from texpress.params import load_params
from texpress.registry.refs import resolve_checkpoint

eval_app = typer.Typer(no_args_is_help=True,
                       help="Rate-distortion evaluation against classical codecs: metrics, BD-rate, figures.")


def _parse_crop(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--crop must look like 768x512, got {text!r}") from None
    return w, h


def _parse_qualities(items: list[str]) -> dict[str, tuple[float, ...]]:
    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"--quality must look like jpeg=10,30,50, got {item!r}") from None
    return out


def _resolved(spec):
    """The spec with its checkpoint resolved (a shipped name or models:/ URI becomes a file)."""
    return ModelSpec(spec.label, resolve_checkpoint(spec.path), spec.effort)


@eval_app.command("run")
def run_command(
    images: list[Path] = typer.Argument(..., help="Image files, folders of images, or .tar shards."),
    model: list[str] = typer.Option([], "--model", "-m", help="Checkpoint to evaluate, or LABEL=CKPT. Repeat it: "
                                    "checkpoints trained at different rates with the same label form one curve "
                                    "(label 'texpress' when none is given)."),
    baselines: Optional[str] = typer.Option(None, "--baselines", "-b", help="Comma-separated classical codecs: "
                                            "jpeg,webp,avif,jpeg2000,heic,jxl, 'all' or 'none' (default: all)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if missing)."),
    quality: list[str] = typer.Option([], "--quality", "-q", help="Override one baseline's sweep, e.g. "
                                      "jpeg=10,30,50 (the codec's own quality knob). Repeatable."),
    crop: Optional[str] = typer.Option(None, "--crop", help="Centre-crop every image to WxH first, e.g. 768x512."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Evaluate only the first N images."),
    figure_image: Optional[str] = typer.Option(None, "--figure-image", help="Image (name or index) for the crops "
                                               "figure (default: the first)."),
    figure_bpp: Optional[float] = typer.Option(None, "--figure-bpp", help="Rate for the crops figure (default: the "
                                               "middle point of the first model curve)."),
    params: Optional[Path] = typer.Option(None, "--params", help="params.yaml whose evaluate: section gives the "
                                          "defaults; options given here override it."),
    mlflow_run_id: Optional[str] = typer.Option(None, "--mlflow-run-id", envvar="MLFLOW_RUN_ID",
                                                help="Also log the numbers and figures to this MLflow run."),
    mlflow_tracking_uri: Optional[str] = typer.Option(None, "--mlflow-tracking-uri", help="MLflow store "
                                                      "(default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."),
    effort: str = typer.Option("0", "--effort", help="Encode efforts of the models, comma-separated, e.g. 0,2: "
                               "each effort above 0 is its own curve, LABEL-eN (docs/effort.md)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar and no summary tables."),
) -> None:
    """Evaluate checkpoints and classical codecs on IMAGES: per_image.csv, summary.json, R-D and crops figures."""
    try:
        efforts = list(dict.fromkeys(check_effort(e) for e in effort.split(",")))
    except TexpressError as exc:
        raise fail(str(exc))
    section = load_params(params, "evaluate") if params is not None else {}
    if baselines is not None:
        section["baselines"] = parse_baselines(baselines)
    if quality:
        section["qualities"] = {**dict(section.get("qualities") or {}), **_parse_qualities(quality)}
    if crop:
        section["crop"] = _parse_crop(crop)
    if max_images is not None:
        section["max_images"] = max_images
    if figure_image is not None or figure_bpp is not None:
        fig = dict(section.get("figure") or {})
        if figure_image is not None:
            fig["image"] = figure_image
        if figure_bpp is not None:
            fig["bpp"] = figure_bpp
        section["figure"] = fig
    cfg = EvalConfig.from_dict(section)
    specs = [_resolved(ModelSpec.parse(m)).at_effort(e) for e in efforts for m in model]
    outcome = run_eval([str(p) for p in images], specs, cfg, output,
                       mlflow_run_id=mlflow_run_id, tracking_uri=mlflow_tracking_uri, on_error=report_item_error,
                       on_warning=warn, progress=progress_bar(show=not quiet))
    if not quiet:
        print_summary(outcome)
    if outcome.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


@eval_app.command("bd-rate")
def bd_rate_command(
    anchor: str = typer.Argument(..., metavar="A.json", help="Anchor curve: a CompressAI result JSON, a texpress "
                                 "curve file, or summary.json#CURVE."),
    test: str = typer.Argument(..., metavar="B.json", help="Curve to compare against the anchor (same formats)."),
    metric: str = typer.Option("psnr-rgb", "--metric", help="psnr-rgb or ms-ssim-rgb (MS-SSIM is compared in dB)."),
) -> None:
    """Print the BD-rate of curve B against curve A in percent (negative: B needs fewer bits)."""
    if metric not in QUALITY_METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(QUALITY_METRICS)}, got {metric!r}")
    name_a, curve_a = load_curve(anchor)
    name_b, curve_b = load_curve(test)
    value = bd_rate_curves(curve_a, curve_b, metric)
    out_console.print(f"BD-rate ({metric}) of {name_b} against {name_a}: {value:+.2f}%", soft_wrap=True)


@eval_app.command("baselines")
def baselines_command() -> None:
    """List the classical codecs, their settings and default quality sweeps."""
    table = Table(title="classical baselines", title_justify="left")
    for col in ("name", "codec", "library", "chroma", "quality knob", "default sweep"):
        table.add_column(col)
    for b in BASELINES.values():
        table.add_row(b.name, b.label, escape(b.version()), b.chroma, b.quality_name,
                      ", ".join(f"{q:g}" for q in b.default_qualities))
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
