"""R-D curves: per-image records, their aggregation into curve points, and curve files.

A curve file is CompressAI's result JSON (`name`, `description`, `results` with lists `bpp`,
`psnr-rgb`, `ms-ssim-rgb`) plus texpress's extra lists (texture scores, quality) and keys
(`kind`, `settings`, `points`). CompressAI's own files and texpress's are read the same way; a
summary.json holding several curves is read with `PATH#CURVE`. Timings are kept apart
(`timing_means`): they change from run to run, the rest is a function of the images and models.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from texpress.errors import TexpressError

FIDELITY = ("bpp", "psnr-rgb", "ms-ssim-rgb")
TEXTURE = ("checkerboard", "texture-distance", "hf-ratio")
TIMES = ("encode_s", "decode_s")
GEOMETRIC = {"hf-ratio"}  # ratios are averaged geometrically


class CurveFileError(TexpressError):
    """A curve file is missing, is not JSON, or holds no usable curve."""


@dataclass
class Record:
    """One image coded at one point of one curve."""

    image: str
    width: int
    height: int
    curve: str
    kind: str
    point: str
    quality: float | None
    bytes: int
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float
    checkerboard: float
    texture_distance: float
    hf_ratio: float
    encode_s: float
    decode_s: float

    def value(self, metric: str) -> float:
        return getattr(self, metric.replace("-", "_"))

    def row(self) -> dict[str, Any]:
        """The per_image.csv row: metric columns named as in the curve files (psnr-rgb, hf-ratio ...)."""
        return {column_name(k): v for k, v in asdict(self).items() if k not in TIMES}

    def timing_row(self) -> dict[str, Any]:
        """The timings.csv row: which image at which point, and its seconds."""
        return {"image": self.image, "curve": self.curve, "point": self.point,
                "encode_s": self.encode_s, "decode_s": self.decode_s}


def column_name(field_name: str) -> str:
    return field_name.replace("_", "-")


CSV_COLUMNS = [column_name(f) for f in Record.__dataclass_fields__ if f not in TIMES]
TIMING_COLUMNS = ["image", "curve", "point", *TIMES]


@dataclass
class Curve:
    """One curve: a baseline's quality sweep or a model's checkpoints, with its aggregated points."""

    name: str
    label: str
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [p[metric] for p in self.points]

    def results(self) -> dict[str, list]:
        """CompressAI-style `results`: one list per metric, points in order of rate."""
        keys = ["bpp", "psnr-rgb", "ms-ssim-rgb", *TEXTURE, "quality"]
        return {k: [p.get(k) for p in self.points] for k in keys}

    def to_file_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.label, "kind": self.kind, "settings": self.settings,
                "results": self.results(), "points": self.points}


def _mean(values: list[float], geometric: bool = False) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan")
    if geometric:
        if any(v <= 0 for v in vals):
            return float("nan") if any(v < 0 for v in vals) else 0.0
        return math.exp(sum(math.log(v) for v in vals) / len(vals))
    return sum(vals) / len(vals)


def _groups(records: list[Record], images: list[str]) -> dict[tuple[str, str], list[Record]]:
    """The records of `images`, by (curve, point)."""
    keep = set(images)
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.image in keep:
            groups.setdefault((r.curve, r.point), []).append(r)
    return groups


def aggregate(records: list[Record], curves: dict[str, Curve], images: list[str]) -> None:
    """Fill each curve's points with the means over `images` (arithmetic; geometric for hf-ratio).

    Points are ordered by rate. Means are over per-image values, as CompressAI averages Kodak."""
    groups = _groups(records, images)
    for curve in curves.values():
        points = []
        for (cname, point), recs in groups.items():
            if cname != curve.name:
                continue
            p: dict[str, Any] = {"point": point, "quality": recs[0].quality, "images": len(recs)}
            for m in (*FIDELITY, *TEXTURE):
                p[m] = _mean([r.value(m) for r in recs], geometric=m in GEOMETRIC)
            points.append(p)
        curve.points = sorted(points, key=lambda p: (p["bpp"], p["point"]))


def timing_means(records: list[Record], images: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{curve: {point: {encode_s, decode_s}}}: mean seconds per image over `images`."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (cname, point), recs in sorted(_groups(records, images).items()):
        out.setdefault(cname, {})[point] = {m: _mean([r.value(m) for r in recs]) for m in TIMES}
    return out


# ---- reading curve files ------------------------------------------------------------------------

def _results_of(obj: dict[str, Any]) -> dict[str, list] | None:
    res = obj.get("results") if isinstance(obj, dict) else None
    if isinstance(res, dict) and isinstance(res.get("bpp"), list):
        return res
    return None


def load_curve(spec: str) -> tuple[str, dict[str, list]]:
    """(name, results) from `PATH` or `PATH#CURVE`.

    PATH is a CompressAI result JSON, a texpress curve file, or a texpress summary.json (then
    #CURVE picks one of its curves; it may be left out when the summary has a single curve)."""
    path_text, _, selector = spec.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise CurveFileError(f"{path}: no such curve file")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurveFileError(f"{path}: not a JSON curve file ({type(exc).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("curves"), dict):
        curves = {n: c for n, c in obj["curves"].items() if _results_of(c)}
        if not curves:
            raise CurveFileError(f"{path}: the summary holds no curves")
        if not selector:
            if len(curves) > 1:
                raise CurveFileError(f"{path} holds {len(curves)} curves; pick one with {path}#NAME "
                                     f"({', '.join(curves)})")
            selector = next(iter(curves))
        if selector not in curves:
            raise CurveFileError(f"{path}: no curve {selector!r} (has {', '.join(curves)})")
        return selector, _results_of(curves[selector])
    if selector:
        raise CurveFileError(f"{path} holds a single curve; drop #{selector}")
    res = _results_of(obj)
    if res is None:
        raise CurveFileError(f"{path}: no results.bpp list (not a CompressAI-style or texpress curve file)")
    return str(obj.get("name") or path.stem), res
