"""The evaluation on a terminal: its progress bar and its summary tables (`texpress eval run`, the DVC
`evaluate` stage). texpress.evaluate.run itself shows nothing."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from texpress.console import err_console, out_console
from texpress.evaluate.run import Outcome


def progress_bar(show: bool = True) -> Callable[[str, int], Any]:
    """The `progress` of run_eval: a rich bar on stderr (none with show=False)."""
    @contextmanager
    def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
        progress = Progress(TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=not show,
                            transient=False)
        with progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)

    return bar


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
