"""One evaluation from start to finish, shared by `texpress eval run` and the DVC `evaluate` stage:
list the images, load the checkpoints, code everything with a progress bar, aggregate, write the
outputs, optionally log them to an MLflow run, print a summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from texpress.console import err_console, out_console, report_item_error, warn
from texpress.errors import InputError
from texpress.evaluate.config import EvalConfig
from texpress.evaluate.curves import aggregate
from texpress.evaluate.report import write_outputs
from texpress.evaluate.runner import ModelSpec, build_points, complete_images, evaluate, is_figure_image
from texpress.evaluate.sources import list_images


@dataclass
class Outcome:
    summary: dict[str, Any]
    out_dir: Path
    failures: int
    mlflow_uri: str | None = None
    notes: list[str] = field(default_factory=list)


def run_eval(inputs: list[str | os.PathLike], models: list[ModelSpec], cfg: EvalConfig, out_dir: str | os.PathLike,
             *, mlflow_run_id: str | None = None, tracking_uri: str | None = None, show: bool = True) -> Outcome:
    """Evaluate `models` and cfg.baselines on the images of `inputs`; write everything to out_dir."""
    out_dir = Path(out_dir)
    items, problems = list_images(inputs)
    for name, message in problems:
        report_item_error(name, message)
    if cfg.max_images:
        items = items[: cfg.max_images]
    if not items:
        raise InputError("no images to evaluate" + (f" ({len(problems)} input(s) unusable)" if problems else ""))
    if cfg.figure.image is not None and not any(is_figure_image(cfg, i, item.name) for i, item in enumerate(items)):
        warn(f"figure image {cfg.figure.image!r} is none of the {len(items)} images; the crops figure shows the first")
        cfg = replace(cfg, figure=replace(cfg.figure, image=None))
    points, curves = build_points(cfg, models)
    if not points:
        raise InputError("nothing to evaluate: give --model and/or --baselines")
    # before the coding: an unusable MLflow run or output folder must not cost a whole evaluation
    if mlflow_run_id:
        from texpress.evaluate.tracking import check_run

        tracking_uri = check_run(mlflow_run_id, tracking_uri)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder ({exc.strerror or type(exc).__name__})") from None

    progress = Progress(TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=not show,
                        transient=False)
    with progress:
        task = progress.add_task(f"{len(items)} images x {len(points)} points", total=len(items) * len(points))
        result = evaluate(items, points, cfg, on_error=report_item_error, advance=lambda n: progress.advance(task, n))
    images, dropped = complete_images(result, points)
    for key in dropped:
        warn(f"{key} failed on every image; left out of the curves")
    left_out = len(result.images) - len(images)
    if left_out:
        warn(f"{left_out} image(s) failed at some point and are left out of the means (see per_image.csv)")
    if not images:
        raise InputError("no image was evaluated at every point; nothing to aggregate")
    aggregate(result.records, curves, images)
    summary = write_outputs(out_dir, result, curves, cfg, images, dropped)
    outcome = Outcome(summary, out_dir, failures=len(result.failures) + len(problems))
    if mlflow_run_id:
        from texpress.evaluate.tracking import log_to_run

        outcome.mlflow_uri = log_to_run(mlflow_run_id, summary, out_dir, tracking_uri)
    if show:
        print_summary(outcome)
    return outcome


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:+.1f}%"


def print_summary(outcome: Outcome) -> None:
    s = outcome.summary
    table = Table(title=f"R-D points (mean over {s['images']['count']} images)", title_justify="left")
    for col in ("curve", "point", "bpp", "PSNR dB", "MS-SSIM", "checker", "tex dist", "HF ratio"):
        table.add_column(col, justify="left" if col in ("curve", "point") else "right")
    for name, c in s["curves"].items():
        for p in c["points"]:
            table.add_row(escape(name), escape(p["point"]), _fmt(p["bpp"], ".3f"), _fmt(p["psnr-rgb"], ".2f"),
                          _fmt(p["ms-ssim-rgb"], ".4f"), _fmt(p["checkerboard"], ".4f"),
                          _fmt(p["texture-distance"], ".4f"), _fmt(p["hf-ratio"], ".3f"))
    out_console.print(table)
    if s["bd_rate"]:
        bd = Table(title="Model against each baseline, in % of the baseline's bits (negative = fewer bits)",
                   title_justify="left")
        for col in ("model", "baseline", "BD-rate PSNR", "BD-rate MS-SSIM", "at equal PSNR", "at equal MS-SSIM"):
            bd.add_column(col, justify="left" if col in ("model", "baseline") else "right")
        for model, row in s["bd_rate"].items():
            for baseline, e in row.items():
                delta = s["rate_delta"][model][baseline]
                bd.add_row(escape(model), escape(baseline), *(_pct(e[m]) + ("*" if m in e.get("sliver", ()) else "")
                                                              for m in ("psnr-rgb", "ms-ssim-rgb")),
                           " ".join(_pct(v) for v in delta["psnr-rgb"]), " ".join(_pct(v) for v in delta["ms-ssim-rgb"]))
        out_console.print(bd)
        out_console.print("BD-rate needs 2+ points per curve (several checkpoints) and is taken over the quality "
                          "range both curves cover; '*': that range is under half the model's (a sliver, it says "
                          "little). 'at equal' columns compare each model point with the baseline curve at the same "
                          "quality ('-': outside its range).", soft_wrap=True, style="dim")
    done = f"wrote {escape(str(outcome.out_dir))}/ (summary.json, per_image.csv, figures)"
    if outcome.mlflow_uri:
        done += f"; logged to MLflow run at {outcome.mlflow_uri}"
    if outcome.failures:
        done += f"; {outcome.failures} failure(s) reported above"
    out_console.print(done, soft_wrap=True)
