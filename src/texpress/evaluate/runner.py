"""The evaluation loop: every image through every point of every curve, measured the same way
(texpress.evaluate.run drives it).

A point is one (encode, decode) pair: a baseline at one quality or one model checkpoint. Each image
is read once, its texture reference computed once, then coded at every point; a failure (an
unreadable image, a codec error on one image) is reported and the batch goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from texpress.codec.api import Codec
from texpress.errors import TexpressError
from texpress.evaluate import metrics
from texpress.evaluate.baselines import BASELINES
from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.curves import Curve, Record
from texpress.evaluate.figures import CropBox, choose_crop
from texpress.evaluate.sources import ImageItem, centre_crop
from texpress.evaluate.texture import TextureReference

# a variable-rate checkpoint is swept at its trained levels (seven, 2x apart in lambda: codec.gain)
VARIABLE_RATE_QUALITIES = (0.0, 16.67, 33.33, 50.0, 66.67, 83.33, 100.0)

@dataclass
class Point:
    curve: str
    kind: str
    point: str
    quality: float | None
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


@dataclass
class Failure:
    image: str
    point: str | None
    message: str


@dataclass
class EvalResult:
    records: list[Record] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # read successfully, in order
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    figure_image: str | None = None
    figure_box: CropBox | None = None
    figure_crops: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (curve, point) -> crop


def _baseline_points(cfg: EvalConfig) -> tuple[list[Point], dict[str, Curve]]:
    points, curves = [], {}
    for name in cfg.baselines:
        b = BASELINES[name]
        qualities = cfg.qualities_for(name)
        curves[name] = Curve(name, b.label, "baseline", {**b.describe(), "qualities": list(qualities)})
        for q in qualities:
            points.append(Point(name, "baseline", f"{b.point_prefix}={q:g}", float(q),
                                lambda rgb, b=b, q=q: b.encode(rgb, q), b.decode))
    return points, curves


def _model_points(models: list[ModelSpec]) -> tuple[list[Point], dict[str, Curve]]:
    """Load every checkpoint (a bad one is a usage error raised before any work)."""
    points, curves = [], {}
    if not models:
        return points, curves
    names: dict[str, set[str]] = {}
    loaded: dict[Path, Codec] = {}
    for spec in models:
        codec = loaded.get(spec.path) or loaded.setdefault(spec.path, Codec.from_checkpoint(spec.path))
        if spec.effort:
            codec.objective()  # a model with no rate weight to refine against stops here, before any work
        curve = curves.setdefault(spec.label, Curve(spec.label, spec.label, "model",
                                                    {"checkpoints": [], "effort": spec.effort}))
        point = spec.path.stem
        used = names.setdefault(spec.label, set())
        if point in used:
            point = f"{point}-{codec.fingerprint[:8]}"
        used.add(point)
        curve.settings["checkpoints"].append({"point": point, "path": str(spec.path), "fingerprint": codec.fingerprint,
                                              "config": codec.config.to_dict()})

        def decode(data: bytes, codec=codec) -> np.ndarray:
            return np.asarray(codec.decompress(data).convert("RGB"))

        if not codec.config.variable_rate:
            points.append(Point(spec.label, "model", point, None,
                                lambda rgb, codec=codec, e=spec.effort: codec.compress(rgb, effort=e), decode))
            continue
        for q in VARIABLE_RATE_QUALITIES:  # one variable-rate checkpoint is a whole curve
            name = f"{point}@q={q:g}" if len(models) > 1 else f"q={q:g}"
            points.append(Point(spec.label, "model", name, q,
                                lambda rgb, codec=codec, q=q, e=spec.effort: codec.compress(rgb, effort=e, quality=q),
                                decode))
    return points, curves


def build_points(cfg: EvalConfig, models: list[ModelSpec]) -> tuple[list[Point], dict[str, Curve]]:
    """Model points first (their curves lead the plots), then each baseline's quality sweep."""
    mp, mc = _model_points(models)
    overlap = set(mc) & set(cfg.baselines)
    if overlap:
        raise TexpressError(f"model label {sorted(overlap)[0]!r} is also a baseline name; pick another label")
    bp, bc = _baseline_points(cfg)
    return mp + bp, {**mc, **bc}


def is_figure_image(cfg: EvalConfig, index: int, name: str) -> bool:
    """figure.image names this image (stem, file name or index); with no choice, the first image read."""
    want = cfg.figure.image
    if want is None:
        return True
    if isinstance(want, int) or (isinstance(want, str) and want.isdigit()):
        return index == int(want)
    return name == want or Path(name).stem == want or Path(name).name == want


def code_point(point: Point, orig: np.ndarray, ref: TextureReference, image: str) -> tuple[Record, np.ndarray]:
    h, w = orig.shape[:2]
    t0 = time.perf_counter()
    data = point.encode(orig)
    t1 = time.perf_counter()
    rec = point.decode(data)
    t2 = time.perf_counter()
    if rec.shape != orig.shape:
        raise TexpressError(f"decoded {rec.shape[1]}x{rec.shape[0]}, expected {w}x{h}")
    tex = ref.scores(rec)
    record = Record(
        image=image, width=w, height=h, curve=point.curve, kind=point.kind, point=point.point, quality=point.quality,
        bytes=len(data), bpp=metrics.bpp(len(data), w, h), psnr_rgb=metrics.psnr(orig, rec),
        ms_ssim_rgb=metrics.ms_ssim(orig, rec), checkerboard=tex["checkerboard"],
        texture_distance=tex["texture-distance"], hf_ratio=tex["hf-ratio"], encode_s=t1 - t0, decode_s=t2 - t1)
    return record, rec


def evaluate(items: list[ImageItem], points: list[Point], cfg: EvalConfig,
             on_error: Callable[[str, str], None] | None = None,
             advance: Callable[[int], None] | None = None) -> EvalResult:
    """Code every image at every point. on_error(name, message) is called for each failure;
    advance(n) after each image (n = points done, including skipped ones)."""
    result = EvalResult()
    for index, item in enumerate(items):
        try:
            orig = centre_crop(item.read(), cfg.crop)
        except TexpressError as exc:
            result.failures.append(Failure(item.name, None, str(exc)))
            if on_error:
                on_error(item.name, str(exc))
            if advance:
                advance(len(points))
            continue
        result.images.append(item.name)
        result.sizes[item.name] = (orig.shape[1], orig.shape[0])
        ref = TextureReference.of(orig, cfg.texture)
        figure = result.figure_image is None and is_figure_image(cfg, index, item.name)
        if figure:
            result.figure_image = item.name
            result.figure_box = choose_crop(orig, cfg.figure.crop)
            result.figure_crops[("original", "")] = result.figure_box.cut(orig)
        for point in points:
            try:
                record, rec = code_point(point, orig, ref, item.name)
            except Exception as exc:  # one codec failing on one image must not stop the batch
                message = f"{point.curve} {point.point}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                result.failures.append(Failure(item.name, f"{point.curve}/{point.point}", message))
                if on_error:
                    on_error(item.name, message)
            else:
                result.records.append(record)
                if figure:
                    result.figure_crops[(point.curve, point.point)] = result.figure_box.cut(rec)
            if advance:
                advance(1)
    return result


def complete_images(result: EvalResult, points: list[Point]) -> tuple[list[str], list[str]]:
    """(images to average over, points dropped): images coded at every point that worked at least once.

    A point that failed on every image is dropped (reported); an image that failed at a remaining
    point is left out of the means so that every point of every curve averages the same images."""
    done: dict[str, set[str]] = {}
    for r in result.records:
        done.setdefault(r.image, set()).add(f"{r.curve}/{r.point}")
    keys = [f"{p.curve}/{p.point}" for p in points]
    alive = [k for k in keys if any(k in s for s in done.values())]
    dropped = [k for k in keys if k not in alive]
    images = [i for i in result.images if all(k in done.get(i, set()) for k in alive)]
    return images, dropped
