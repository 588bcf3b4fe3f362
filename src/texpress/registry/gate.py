"""The promotion gate: from a side-by-side `Comparison` to a list of checks and a verdict.

With a champion (thresholds in GateConfig):
  quality    % more bits than the champion at equal PSNR and at equal MS-SSIM: BD-rate when both
             curves have 2+ points; with one point each, both points' rates against the anchor curve
             at their own quality, (1 + d_cand) / (1 + d_champ) - 1; when a point lies outside the
             anchor's quality range, only a dominating point (no more bits, no less quality) passes
  texture    texture-statistics distance and checkerboard score, absolute increase over the champion's
  speed      decode ms per megapixel, relative to the champion's, measured side by side
Without one, absolute floors: % bits against the anchor at equal PSNR, and a minimum PSNR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from texpress.evaluate.bdrate import QUALITY_METRICS, BDRateError, bd_rate, quality_axis
from texpress.registry.compare import CANDIDATE, CHAMPION, Comparison
from texpress.registry.config import GateConfig


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = self.value if self.value is None or math.isfinite(self.value) else None
        return d


def _at_most(name: str, value: float | None, limit: float, note: str = "") -> Check:
    ok = value is not None and math.isfinite(value) and value <= limit + 1e-12
    return Check(name, value, limit, ok, note)


def quality_delta(cmp: Comparison, metric: str) -> tuple[float | None, str]:
    """% bits of the candidate against the champion at equal `metric`, and how it was obtained."""
    cand, champ = cmp.curves[CANDIDATE], cmp.curves[CHAMPION]
    if len(cand) >= 2 and len(champ) >= 2:
        try:
            return bd_rate([p["bpp"] for p in champ], quality_axis([p[metric] for p in champ], metric),
                           [p["bpp"] for p in cand], quality_axis([p[metric] for p in cand], metric)), "BD-rate"
        except BDRateError as exc:
            return None, f"BD-rate: {exc}"
    dc, dh = cmp.vs_anchor[CANDIDATE][metric][0], cmp.vs_anchor[CHAMPION][metric][0]
    if dc is not None and dh is not None:
        return ((1 + dc / 100) / (1 + dh / 100) - 1) * 100, f"equal quality, through the {cmp.anchor} curve"
    (rc, qc), (rh, qh) = (cand[0]["bpp"], cand[0][metric]), (champ[0]["bpp"], champ[0][metric])
    if rc <= rh and qc >= qh:
        return (rc / rh - 1) * 100, f"outside the {cmp.anchor} range; the candidate dominates (rate ratio)"
    if rc >= rh and qc <= qh:
        return None, f"outside the {cmp.anchor} range; the champion dominates"
    return None, f"outside the {cmp.anchor} range and neither point dominates: not comparable"


def champion_checks(cmp: Comparison, gate: GateConfig) -> list[Check]:
    checks = []
    for metric in QUALITY_METRICS:
        value, how = quality_delta(cmp, metric)
        checks.append(_at_most(f"rate_delta_{metric}", value, gate.max_rate_delta, how))
    cand, champ = cmp.curves[CANDIDATE], cmp.curves[CHAMPION]
    for metric, tol in (("texture-distance", gate.texture_tolerance), ("checkerboard", gate.checkerboard_tolerance)):
        c, h = _mean(cand, metric), _mean(champ, metric)
        checks.append(_at_most(f"{metric}_increase", c - h, tol, f"candidate {c:.4f}, champion {h:.4f}"))
    sc, sh = cmp.decode_ms_per_mpx[CANDIDATE], cmp.decode_ms_per_mpx[CHAMPION]
    checks.append(_at_most("decode_slowdown", sc / sh - 1 if sh > 0 else math.inf, gate.speed_tolerance,
                           f"candidate {sc:.1f} ms/Mpx, champion {sh:.1f} ms/Mpx"))
    return checks


def floor_checks(cmp: Comparison, gate: GateConfig) -> list[Check]:
    checks = []
    if gate.floor_max_rate_delta is not None:
        value = cmp.vs_anchor[CANDIDATE]["psnr-rgb"][0]
        note = (f"% bits against {cmp.anchor} at equal PSNR" if value is not None
                else f"PSNR outside the {cmp.anchor} curve's range: no equal-quality comparison")
        checks.append(_at_most(f"rate_vs_{cmp.anchor}", value, gate.floor_max_rate_delta, note))
    if gate.floor_min_psnr is not None:
        psnr = _mean(cmp.curves[CANDIDATE], "psnr-rgb")
        checks.append(Check("psnr", psnr, gate.floor_min_psnr, psnr >= gate.floor_min_psnr, "dB, at least"))
    return checks


def _mean(points: list[dict[str, Any]], metric: str) -> float:
    values = [p[metric] for p in points if p.get(metric) is not None]
    return sum(values) / len(values) if values else math.nan


def judge(cmp: Comparison, gate: GateConfig) -> list[Check]:
    """Every check of the gate; the candidate wins when all pass."""
    return champion_checks(cmp, gate) if CHAMPION in cmp.curves else floor_checks(cmp, gate)
