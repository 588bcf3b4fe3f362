"""`texpress data ingest` and `texpress data stats`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from texpress.console import EXIT_FAILED_ITEMS, err_console, fail, out_console, report_item_error
from texpress.data.config import ShardConfig
from texpress.data.manifest import stats
from texpress.data.report import run_ingest, summary_table

_D = ShardConfig()

data_app = typer.Typer(no_args_is_help=True,
                       help="Datasets: ingest image stores into WebDataset shards and inspect them.")


@data_app.command("ingest")
def ingest_command(
    sources: List[str] = typer.Argument(..., help="Folders (recursive), .tar/.tar.gz/.zip archives or URLs "
                                        "(s3://bucket/prefix, file://...)."),
    out: Path = typer.Option(..., "--output", "-o", help="Dataset folder to write (replaced when complete)."),
    min_side: int = typer.Option(_D.min_side, help="Reject images whose shorter side is below this."),
    max_pixels: int = typer.Option(_D.max_pixels, help="Reject images above this many pixels (checked before decoding)."),
    max_file_bytes: int = typer.Option(_D.max_file_bytes, help="Reject files larger than this, unread."),
    val_frac: float = typer.Option(_D.val_frac, help="Fraction of the content-hash space that goes to val."),
    test_frac: float = typer.Option(_D.test_frac, help="Fraction of the content-hash space that goes to test."),
    max_samples: int = typer.Option(_D.max_samples, help="At most this many samples per shard."),
    max_bytes: int = typer.Option(_D.max_bytes, help="At most this many bytes per shard."),
    workers: int = typer.Option(_D.workers, help="Decoding processes (the output does not depend on it)."),
    endpoint_url: Optional[str] = typer.Option(None, help="S3-compatible endpoint for s3:// sources "
                                               "(default: $TEXPRESS_S3_ENDPOINT_URL, else the AWS settings)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Validate, deduplicate, split and shard images from SOURCE... into DIR."""
    config = ShardConfig(min_side=min_side, max_pixels=max_pixels, max_file_bytes=max_file_bytes,
                         val_frac=val_frac, test_frac=test_frac, max_samples=max_samples,
                         max_bytes=max_bytes, workers=workers)
    result = run_ingest(sources, out, config, console=err_console, summary_console=out_console,
                        endpoint_url=endpoint_url, progress=progress)
    for source, detail in result.source_errors:
        report_item_error(source, detail)
    if result.manifest["accepted"] == 0:
        where = f"see {out / 'rejected.jsonl'}" if result.written else f"the dataset in {out} was left as it was"
        raise fail(f"no image was accepted; {where}", EXIT_FAILED_ITEMS)
    if result.source_errors:
        raise typer.Exit(EXIT_FAILED_ITEMS)


@data_app.command("stats")
def stats_command(
    directory: str = typer.Argument(..., help="Dataset folder (or URL) written by ingest or the shard stage."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: seen, accepted, rejected, duplicates, splits, ..."),
    endpoint_url: Optional[str] = typer.Option(None, help="S3-compatible endpoint for s3:// folders."),
) -> None:
    """Counts per split, shards, bytes, rejections by reason and duplicates of a dataset."""
    s = stats(directory, endpoint_url)
    if as_json:
        typer.echo(json.dumps(s, indent=2, sort_keys=True))
        return

    out_console.print(summary_table(s, title=f"dataset {directory}"))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
