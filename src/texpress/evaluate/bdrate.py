"""Bjontegaard delta rate with piecewise cubic Hermite (PCHIP) interpolation over log-rate.

For curves A (anchor) and B (test), each a set of (rate, quality) points: interpolate log(rate) as a
monotone PCHIP function of quality for each curve, integrate both over the quality interval the two
curves share, and turn the mean log-rate difference into a percentage:

    BD-rate(B vs A) = (exp( (int log R_B(q) dq - int log R_A(q) dq) / (q_max - q_min) ) - 1) * 100

Negative: B needs fewer bits than A for the same quality. This is the PCHIP variant of VCEG-M33
used by CompressAI and the JVET/AOM common test conditions (cubic polynomial fits are the original
1991-style variant; PCHIP does not overshoot between points). MS-SSIM BD-rates are computed on
the dB scale -10 log10(1 - MS-SSIM), as in CompressAI's plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from texpress.errors import TexpressError
from texpress.evaluate.metrics import ms_ssim_db

QUALITY_METRICS = ("psnr-rgb", "ms-ssim-rgb")
# a BD-rate over less than this share of the test curve's quality range is flagged as a sliver
MIN_OVERLAP = 0.5


class BDRateError(TexpressError):
    """The two curves cannot be compared (too few points, no overlapping quality range)."""


def _numbers(values: Sequence[float | None], which: str) -> np.ndarray:
    """A float array; None (a missing value in a curve file) becomes NaN, anything else not a number is an error."""
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise BDRateError(f"curve {which} holds values that are not numbers" if which else
                          "a curve holds values that are not numbers") from None


def _curve(rate: Sequence[float], quality: Sequence[float], which: str) -> tuple[np.ndarray, np.ndarray]:
    r, q = _numbers(rate, which), _numbers(quality, which)
    if r.shape != q.shape or r.ndim != 1:
        raise BDRateError(f"curve {which}: rate and quality lists differ in length")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    if len(r) < 2:
        raise BDRateError(f"curve {which} has {len(r)} usable point(s); BD-rate needs at least 2")
    order = np.argsort(q)
    q, log_r = q[order], np.log(r[order])
    # equal qualities: keep the lowest rate (the efficient point), PCHIP needs strictly increasing x
    uq = np.unique(q)
    if len(uq) < len(q):
        log_r = np.array([log_r[q == v].min() for v in uq])
        q = uq
    if len(q) < 2:
        raise BDRateError(f"curve {which} has fewer than 2 distinct quality values")
    return q, log_r


def bd_rate_with_overlap(rate_a: Sequence[float], quality_a: Sequence[float],
                         rate_b: Sequence[float], quality_b: Sequence[float]) -> tuple[float, float]:
    """(BD-rate of B against A in %, overlap): overlap is the share of B's quality range that A also
    covers, the part the BD-rate speaks for (below MIN_OVERLAP it is a sliver and says little)."""
    qa, la = _curve(rate_a, quality_a, "A")
    qb, lb = _curve(rate_b, quality_b, "B")
    lo, hi = max(qa[0], qb[0]), min(qa[-1], qb[-1])
    if not hi > lo:
        raise BDRateError(f"the curves do not overlap in quality (A {qa[0]:.4g}..{qa[-1]:.4g}, "
                          f"B {qb[0]:.4g}..{qb[-1]:.4g})")
    ia = PchipInterpolator(qa, la).integrate(lo, hi)
    ib = PchipInterpolator(qb, lb).integrate(lo, hi)
    return float((math.exp((ib - ia) / (hi - lo)) - 1.0) * 100.0), float((hi - lo) / (qb[-1] - qb[0]))


def bd_rate(rate_a: Sequence[float], quality_a: Sequence[float],
            rate_b: Sequence[float], quality_b: Sequence[float]) -> float:
    """BD-rate of curve B against anchor A in percent (PCHIP over log-rate, shared quality range)."""
    return bd_rate_with_overlap(rate_a, quality_a, rate_b, quality_b)[0]


def rate_delta_at(rate_a: Sequence[float], quality_a: Sequence[float], rate: float, quality: float) -> float:
    """Rate difference of one point (rate, quality) against curve A at the same quality, in percent.

    The single-point counterpart of BD-rate, for a model curve with one checkpoint: A's log-rate is
    PCHIP-interpolated at `quality`, which must lie within A's quality range."""
    qa, la = _curve(rate_a, quality_a, "A")
    if not (qa[0] <= quality <= qa[-1]):
        raise BDRateError(f"quality {quality:.4g} is outside curve A's range {qa[0]:.4g}..{qa[-1]:.4g}")
    if not rate > 0:
        raise BDRateError("the point's rate must be positive")
    return float((rate / math.exp(float(PchipInterpolator(qa, la)(quality))) - 1.0) * 100.0)


def quality_axis(values: Sequence[float | None], metric: str, which: str = "") -> list[float]:
    """The quality values BD-rate integrates over: PSNR as is, MS-SSIM in dB (missing values: NaN)."""
    if metric not in QUALITY_METRICS:
        raise BDRateError(f"unknown quality metric {metric!r}; choose one of {', '.join(QUALITY_METRICS)}")
    q = _numbers(values, which)
    if metric == "psnr-rgb":
        return q.tolist()

    return [ms_ssim_db(v) if math.isfinite(v) else float("nan") for v in q]


def bd_rate_curves(anchor: dict, test: dict, metric: str = "psnr-rgb") -> float:
    """BD-rate of `test` against `anchor`, both CompressAI-style `results` dicts (bpp, psnr-rgb, ms-ssim-rgb)."""
    for which, c in (("A", anchor), ("B", test)):
        if "bpp" not in c or metric not in c:
            raise BDRateError(f"curve {which} has no {'bpp' if 'bpp' not in c else metric} values")
    return bd_rate(anchor["bpp"], quality_axis(anchor[metric], metric, "A"),
                   test["bpp"], quality_axis(test[metric], metric, "B"))
