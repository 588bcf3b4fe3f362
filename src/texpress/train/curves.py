"""The three training curves (rate loss, distortion loss, rate-distortion loss against iterations):
a TSV for `dvc plots show` and one PNG each for MLflow.

rate loss = lambda * r (r in bits per pixel, lambda from rate control), distortion loss = d(x, x'),
rate-distortion loss = their sum, so the three curves add up. The history is one value per step,
kept in every training checkpoint, so a resumed run draws the same curves as an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from texpress.files import write_atomic

HISTORY_KEYS = ("step", "bpp", "rate_loss", "distortion_loss", "rd_loss")
TSV_COLUMNS = HISTORY_KEYS
CURVES = {  # file stem -> (history key, title)
    "rate_loss": ("rate_loss", "Rate loss (lambda * bpp)"),
    "distortion_loss": ("distortion_loss", "Distortion loss d(x, x')"),
    "rd_loss": ("rd_loss", "Rate-distortion loss"),
}


def empty_history() -> dict[str, list]:
    return {k: [] for k in HISTORY_KEYS}


def append(history: dict[str, list], step: int, stats: dict[str, float]) -> None:
    history["step"].append(int(step))
    history["bpp"].append(float(stats["bpp"]))
    history["rate_loss"].append(float(stats["rate_loss"]))
    history["distortion_loss"].append(float(stats["distortion"]))
    history["rd_loss"].append(float(stats["loss_rd"]))


def truncate(history: dict[str, list], steps: int) -> dict[str, list]:
    """The history of steps 1..`steps` (what a checkpoint at `steps` covers)."""
    keep = sum(1 for s in history["step"] if s <= steps)
    return {k: list(v[:keep]) for k, v in history.items()}


def write_tsv(history: dict[str, list], path: str | os.PathLike) -> Path:
    path = Path(path)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(TSV_COLUMNS)
            for row in zip(*(history[k] for k in TSV_COLUMNS)):
                w.writerow([row[0], *(f"{v:.6g}" for v in row[1:])])

    write_atomic(path, writer=write)
    return path


def read_tsv(path: str | os.PathLike) -> dict[str, list]:
    history = empty_history()
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            history["step"].append(int(row["step"]))
            for k in HISTORY_KEYS[1:]:
                history[k].append(float(row[k]))
    return history


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(history: dict[str, list], out_dir: str | os.PathLike, *, rd_steps: int | None = None,
                target_bpp: float | None = None) -> list[Path]:
    """rate_loss.png, distortion_loss.png, rd_loss.png in out_dir; raw values and a moving average,
    the start of the adversarial phase as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    steps = history["step"]
    window = max(1, len(steps) // 50)
    paths = []
    for stem, (key, title) in CURVES.items():
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        values = history[key]
        ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=0.8, label="per step")
        ax.plot(steps, _smooth(values, window), color="tab:blue", linewidth=1.5, label=f"mean of {window}")
        if key == "distortion_loss" or key == "rd_loss":
            positive = [v for v in values if v > 0]
            if positive and max(positive) / max(min(positive), 1e-12) > 100:
                ax.set_yscale("log")
        if key == "rate_loss":
            ax2 = ax.twinx()
            ax2.plot(steps, _smooth(history["bpp"], window), color="tab:orange", linewidth=1.0, label="bpp")
            if target_bpp is not None:
                ax2.axhline(target_bpp, color="tab:orange", linestyle=":", linewidth=1.0, label="target bpp")
            ax2.set_ylabel("bits per pixel")
            ax2.legend(loc="upper center", fontsize=8)
        if rd_steps and steps and steps[0] <= rd_steps <= steps[-1]:
            ax.axvline(rd_steps, color="gray", linestyle="--", linewidth=1.0, label="adversarial phase")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel(key.replace("_", " "))
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        write_atomic(path, writer=lambda tmp: fig.savefig(tmp, format="png"))
        paths.append(path)
    return paths
