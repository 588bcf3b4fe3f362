"""`texpress bulk compress|decompress|verify`: whole image stores on Ray Data."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, List, Optional

import typer

from texpress.bulk.config import FILES, WEBDATASET, BulkConfig
from texpress.bulk.job import run_bulk
from texpress.bulk.verify import verify
from texpress.console import EXIT_FAILED_ITEMS, err_console, fail, out_console, report_item_error
from texpress.data import storage
from texpress.files import file_in_the_way, write_atomic

_D = BulkConfig()

bulk_app = typer.Typer(no_args_is_help=True, help="Compress and restore large image stores on Ray Data "
                       "(resumable: run the same command again after an interruption).")

SOURCES = typer.Argument(..., help="Folders, .tar/.tar.gz/.zip archives, WebDataset shards or s3:// prefixes.")
MODEL = typer.Option(None, "--model", "-m", help="Checkpoint file, a shipped model's name (`texpress models shipped`) "
                     "or models:/NAME@ALIAS from the model registry [default: the shipped lite].")
WORKERS = typer.Option(_D.workers, "--workers", "-w", min=1, help="Actors, each holding one loaded codec.")
CPUS = typer.Option(_D.cpus_per_worker, "--cpus-per-worker", min=0.01, help="CPUs (and torch threads) per actor.")
GPUS = typer.Option(_D.gpus_per_worker, "--gpus-per-worker", min=0.0, help="GPUs per actor (0: CPU only).")
BATCH = typer.Option(_D.batch_size, "--batch-size", min=1, help="Images per actor call.")
WDS_IN = typer.Option(False, "--webdataset", help="SOURCE tars are WebDataset shards (members grouped by key).")
def _endpoint(value: Optional[str]) -> Optional[str]:
    if value is not None and not value.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


ENDPOINT = typer.Option(None, "--endpoint-url", callback=_endpoint, help="S3-compatible endpoint for s3:// paths "
                        "(default: $TEXPRESS_S3_ENDPOINT_URL, else the AWS settings).")
MAX_PIXELS = typer.Option(_D.max_pixels, "--max-pixels", min=1, help="Refuse images above this many pixels.")
MAX_BYTES = typer.Option(_D.max_file_bytes, "--max-file-bytes", min=1, help="Refuse input files above this size, unread.")
REPORT = typer.Option(None, "--report", help="Also write the JSON report here (it is always in DEST/report.json).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def _config(options: dict[str, Any]) -> BulkConfig:
    """A command's options as a BulkConfig: the options named like its fields, --webdataset as the source
    format and --shards as the destination format."""
    names = {f.name for f in fields(BulkConfig)}
    return BulkConfig(source_format=WEBDATASET if options["webdataset"] else FILES,
                      dest_format=WEBDATASET if options.get("shards") else FILES,
                      **{k: v for k, v in options.items() if k in names})


def _run(mode: str, sources: list[str], output: str, model: Optional[str], config: BulkConfig, report_path: Optional[Path],
         progress: bool) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    for source in sources:  # a mistyped SOURCE is a usage error, not a bad item: nothing starts, nothing is written
        if storage.is_local(source) and not Path(storage.local_path(source)).exists():
            raise fail(f"{source}: no such file or folder")
    if report_path is not None and (blocking := file_in_the_way(report_path)) is not None:
        raise fail(f"--report {report_path}: {blocking} is a file, not a folder")  # before the job, not after
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                   TextColumn("{task.fields[stats]}"), console=err_console, transient=True, disable=not progress)

    def show(r) -> None:
        bar.update(task, stats=f"{r.coded} coded, {r.skipped} skipped, {r.failed_now} failed | "
                               f"{r.images_per_s:.1f} images/s, {r.mb_per_s:.2f} MB/s")

    with bar:
        task = bar.add_task(f"bulk {mode}", stats="starting Ray ...")
        report = run_bulk(mode, sources, output, model, config, on_progress=show)
    out_console.print(report.table())
    for e in report.errors[:20]:
        report_item_error(e["key"], f"{e['reason']}: {e['detail']}")
    if report.failed > 20:
        err_console.print(f"... {report.failed - 20} more in {output.rstrip('/')}/errors.jsonl", markup=False)
    if report_path is not None:

        write_atomic(report_path, report.to_json().encode())
    if not report.ok:
        raise typer.Exit(EXIT_FAILED_ITEMS)


@bulk_app.command("compress")
def compress(
    sources: List[str] = SOURCES,
    output: str = typer.Option(..., "--output", "-o", help="Folder or s3:// prefix for the .tpx outputs, "
                               "the manifest, errors.jsonl and report.json."),
    model: Optional[str] = MODEL,
    workers: int = WORKERS,
    cpus_per_worker: float = CPUS,
    gpus_per_worker: float = GPUS,
    batch_size: int = BATCH,
    shards: bool = typer.Option(False, "--shards", help="Write WebDataset shards of .tpx records instead of one file per image."),
    shard_size: int = typer.Option(_D.shard_size, "--shard-size", min=1, help="Records per shard (with --shards)."),
    webdataset: bool = WDS_IN,
    endpoint_url: Optional[str] = ENDPOINT,
    max_pixels: int = MAX_PIXELS,
    max_file_bytes: int = MAX_BYTES,
    effort: int = typer.Option(_D.effort, "--effort", help="Encode effort, 0 (the default) to 3: higher efforts "
                               "refine each image's latents for fewer bits with the same decoder (docs/effort.md)."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="The rate weight efforts above 0 refine against "
                                        "[default: the model's own]."),
    quality: Optional[float] = typer.Option(None, "--quality", "-q", help="A variable-rate model's quality, 0 "
                                            "(fewest bits) to 100 (default: the model's, 50); single-rate models "
                                            "refuse it."),
    report: Optional[Path] = REPORT,
    progress: bool = PROGRESS,
) -> None:
    """Compress every image of SOURCE... into DEST (SOURCE's paths mirrored, NAME.EXT -> NAME.EXT.tpx)."""
    _run("compress", sources, output, model, _config(locals()), report, progress)


@bulk_app.command("decompress")
def decompress(
    sources: List[str] = SOURCES,
    output: str = typer.Option(..., "--output", "-o", help="Folder or s3:// prefix for the restored PNGs."),
    model: Optional[str] = MODEL,
    workers: int = WORKERS,
    cpus_per_worker: float = CPUS,
    gpus_per_worker: float = GPUS,
    batch_size: int = BATCH,
    webdataset: bool = WDS_IN,
    endpoint_url: Optional[str] = ENDPOINT,
    max_pixels: int = MAX_PIXELS,
    max_file_bytes: int = MAX_BYTES,
    report: Optional[Path] = REPORT,
    progress: bool = PROGRESS,
) -> None:
    """Restore the .tpx files (or shards) of SOURCE... as PNGs under their original names and paths."""
    _run("decompress", sources, output, model, _config(locals()), report, progress)


@bulk_app.command("verify")
def verify_command(
    dest: str = typer.Argument(..., help="A destination written by `texpress bulk compress`."),
    model: Optional[str] = MODEL,
    sample: int = typer.Option(16, "--sample", min=1, help="Inputs to decode and compare."),
    all_: bool = typer.Option(False, "--all", help="Decode and compare every input."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    endpoint_url: Optional[str] = ENDPOINT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Decode a sample (or --all) of DEST against the originals: PSNR, sizes, counts."""
    from rich.table import Table

    result = verify(dest, model, sample=None if all_ else sample, seed=seed, endpoint_url=endpoint_url)
    if as_json:
        typer.echo(result.to_json(), nl=False)
    else:
        t = Table(title=f"bulk verify {dest}", show_header=False, title_justify="left")
        for k, v in (("recorded as done", f"{result.recorded:,}"), ("outputs found", f"{result.outputs:,}"),
                     ("decoded and compared", f"{result.checked:,}"), ("PSNR mean", f"{result.psnr_mean:.2f} dB"),
                     ("PSNR min", f"{result.psnr_min:.2f} dB"), ("problems", f"{len(result.problems)}")):
            t.add_row(k, v)
        out_console.print(t)
        for p in result.problems:
            report_item_error(dest, p)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def register(app: typer.Typer) -> None:
    app.add_typer(bulk_app, name="bulk")
