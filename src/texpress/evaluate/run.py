"""One evaluation, without display: list the images, load the checkpoints, code every image at every
point, aggregate. `run_eval` adds the outputs (and optionally an MLflow run) for `texpress eval run`,
the DVC `evaluate` stage and the benchmarks; the registry's gate runs an `Evaluation` itself and
reads the curves. Progress and messages go to the callbacks the caller passes (texpress.evaluate.display
has the terminal ones)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from texpress.errors import InputError
from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.curves import Curve, aggregate
from texpress.evaluate.report import write_outputs
from texpress.evaluate.runner import EvalResult, Point, build_points, complete_images, evaluate, is_figure_image
from texpress.evaluate.sources import ImageItem, list_images
from texpress.evaluate.tracking import check_run, log_to_run

OnError = Callable[[str, str], None]  # (image or input, message): one failure, the batch goes on
OnWarning = Callable[[str], None]
Progress = Callable[[str, int], AbstractContextManager]  # (description, total) -> context giving advance(n)


def _ignore(*args) -> None:
    pass


def load_items(inputs: list[str | os.PathLike], max_images: int | None,
               on_error: OnError | None = None) -> tuple[list[ImageItem], int]:
    """(the images to evaluate, how many inputs were unusable): unusable ones go to on_error."""
    items, problems = list_images(inputs)
    for name, message in problems:
        (on_error or _ignore)(name, message)
    return (items[:max_images] if max_images else items), len(problems)


@dataclass
class Evaluation:
    """Images, points and curves, ready to code: every checkpoint is loaded (a bad one fails here, before
    any coding)."""

    items: list[ImageItem]
    points: list[Point]
    curves: dict[str, Curve]
    cfg: EvalConfig
    result: EvalResult | None = None
    images: list[str] = field(default_factory=list)  # coded at every remaining point: the means' images
    dropped: list[str] = field(default_factory=list)  # points that failed on every image

    @classmethod
    def prepare(cls, items: list[ImageItem], models: list[ModelSpec], cfg: EvalConfig) -> "Evaluation":
        points, curves = build_points(cfg, models)
        if not points:
            raise InputError("nothing to evaluate: give --model and/or --baselines")
        return cls(items, points, curves, cfg)

    @property
    def size(self) -> int:
        return len(self.items) * len(self.points)

    def run(self, on_error: OnError | None = None, advance: Callable[[int], None] | None = None) -> "Evaluation":
        """Code everything, then average the curves over the images that every point coded."""
        self.result = evaluate(self.items, self.points, self.cfg, on_error=on_error, advance=advance)
        self.images, self.dropped = complete_images(self.result, self.points)
        if self.images:
            aggregate(self.result.records, self.curves, self.images)
        return self


@dataclass
class Outcome:
    summary: dict[str, Any]
    out_dir: Path
    failures: int
    mlflow_uri: str | None = None
    notes: list[str] = field(default_factory=list)


def run_eval(inputs: list[str | os.PathLike], models: list[ModelSpec], cfg: EvalConfig, out_dir: str | os.PathLike,
             *, mlflow_run_id: str | None = None, tracking_uri: str | None = None, on_error: OnError | None = None,
             on_warning: OnWarning | None = None, progress: Progress | None = None) -> Outcome:
    """Evaluate `models` and cfg.baselines on the images of `inputs`; write everything to out_dir."""
    warn = on_warning or _ignore
    out_dir = Path(out_dir)
    items, problems = load_items(inputs, cfg.max_images, on_error)
    if not items:
        raise InputError("no images to evaluate" + (f" ({problems} input(s) unusable)" if problems else ""))
    if cfg.figure.image is not None and not any(is_figure_image(cfg, i, item.name) for i, item in enumerate(items)):
        warn(f"figure image {cfg.figure.image!r} is none of the {len(items)} images; the crops figure shows the first")
        cfg = replace(cfg, figure=replace(cfg.figure, image=None))
    evaluation = Evaluation.prepare(items, models, cfg)
    # before the coding: an unusable MLflow run or output folder must not cost a whole evaluation
    if mlflow_run_id:
        tracking_uri = check_run(mlflow_run_id, tracking_uri)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder ({exc.strerror or type(exc).__name__})") from None

    bar = progress(f"{len(items)} images x {len(evaluation.points)} points", evaluation.size) if progress else None
    with bar or nullcontext(None) as advance:
        evaluation.run(on_error, advance)
    result = evaluation.result
    for key in evaluation.dropped:
        warn(f"{key} failed on every image; left out of the curves")
    left_out = len(result.images) - len(evaluation.images)
    if left_out:
        warn(f"{left_out} image(s) failed at some point and are left out of the means (see per_image.csv)")
    if not evaluation.images:
        raise InputError("no image was evaluated at every point; nothing to aggregate")
    summary = write_outputs(out_dir, result, evaluation.curves, cfg, evaluation.images, evaluation.dropped)
    outcome = Outcome(summary, out_dir, failures=len(result.failures) + problems)
    if mlflow_run_id:
        outcome.mlflow_uri = log_to_run(mlflow_run_id, summary, out_dir, tracking_uri)
    return outcome
