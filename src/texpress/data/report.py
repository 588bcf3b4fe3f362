"""Terminal side of ingest: a progress bar, one line per rejected file (capped), a summary table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from texpress.data.config import ShardConfig
from texpress.data.ingest import IngestResult, Outcome, ingest
from texpress.data.split import SPLITS

MAX_REJECTION_LINES = 20


def run_ingest(sources: Sequence[str], out_dir: str | Path, config: ShardConfig, *, console: Console,
               summary_console: Console, endpoint_url: str | None = None, progress: bool = True) -> IngestResult:
    """ingest() with progress on `console` and the summary on `summary_console`."""
    counts = {"rejected": 0, "accepted": 0}
    start = time.perf_counter()
    bar = Progress(SpinnerColumn(), TextColumn("ingest {task.completed} files  {task.fields[acc]} accepted"),
                   TimeElapsedColumn(), console=console, transient=True, disable=not progress)

    with bar:
        task = bar.add_task("ingest", total=None, acc=0)

        def on_item(o: Outcome) -> None:
            counts[o.status] = counts.get(o.status, 0) + 1
            if o.status == "rejected" and counts["rejected"] <= MAX_REJECTION_LINES:
                bar.console.print(f"[yellow]rejected:[/yellow] {escape(o.source)}: {escape(o.detail)}",
                                  markup=True, highlight=False, soft_wrap=True)
            bar.update(task, advance=1, acc=counts["accepted"])

        result = ingest(sources, out_dir, config, endpoint_url=endpoint_url, on_item=on_item)
    if counts["rejected"] > MAX_REJECTION_LINES and result.written:
        console.print(f"... and {counts['rejected'] - MAX_REJECTION_LINES} more rejections "
                      f"(all in {Path(out_dir) / 'rejected.jsonl'})", highlight=False)
    seconds = time.perf_counter() - start
    summary_console.print(summary_table(result.manifest, title=f"ingest -> {out_dir} ({seconds:.1f} s)"))
    return result


def summary_table(m: dict[str, Any], title: str) -> Table:
    """Counts, splits and rejections of a manifest (ingest's end, `texpress data stats`)."""
    t = Table(title=title, title_justify="left", show_header=True)
    t.add_column("")
    t.add_column("samples", justify="right")
    t.add_column("shards", justify="right")
    t.add_column("bytes", justify="right")
    for split in [s for s in SPLITS if s in m["splits"]] + [s for s in m["splits"] if s not in SPLITS]:
        n = m["splits"][split]
        t.add_row(split, f"{n:,}", f"{m['shards'].get(split, 0):,}", f"{m['bytes'].get(split, 0):,}")
    t.add_section()
    t.add_row("seen", f"{m['seen']:,}", "", "")
    t.add_row("accepted", f"{m['accepted']:,}", "", "")
    t.add_row("duplicates", f"{m['duplicates']:,}", "", "")
    t.add_row("rejected", f"{m['rejected']:,}", "", "")
    for reason, n in m.get("rejected_by_reason", {}).items():
        t.add_row(f"  {reason}", f"{n:,}", "", "")
    t.caption = f"dataset version {m['dataset_version'][:16]}  (seen = accepted + rejected + duplicates)"
    t.caption_justify = "left"
    return t
