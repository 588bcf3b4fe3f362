"""`texpress compress`, `decompress`, `info` and `texpress models ...`: the codec's commands."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from texpress.codec import bitstream
from texpress.codec.api import Codec, bits_per_pixel
from texpress.codec.checkpoint import (build_model, compact_checkpoint, load_model, read_checkpoint, save_checkpoint,
                                       transplant)
from texpress.codec.complexity import measure
from texpress.codec.config import PRESETS, get_preset
from texpress.codec.files import expand
from texpress.codec.imageio import IMAGE_SUFFIXES
from texpress.codec.model import DOWNSCALE, TexpressModel
from texpress.codec.refine import check_effort, check_lambda, levels_for, steps_for
from texpress.codec.shipped import by_fingerprint, default_model, models_dir, shipped_models
from texpress.console import EXIT_FAILED_ITEMS, err_console, fail, out_console, report_item_error, warn
from texpress.errors import TexpressError
from texpress.files import write_atomic
from texpress.registry.refs import resolve_checkpoint
from texpress.registry.shipping import ship

models_app = typer.Typer(no_args_is_help=True, help="List presets, create and inspect checkpoints.")

MODEL_OPTION = typer.Option(None, "--model", "-m", help="Checkpoint file (.ckpt or .safetensors), a shipped "
                            "model's name (`texpress models shipped`) or models:/NAME@ALIAS [default: the shipped "
                            "lite for compress; for decompress, the shipped model that made each file].")
OUT_OPTION = typer.Option(..., "--output", "-o", help="Output folder (created if missing).")
FORCE_OPTION = typer.Option(False, "--force", "-f", help="Overwrite existing outputs.")
EFFORT_OPTION = typer.Option(0, "--effort", help="Encode effort: 0 (fastest, the default) to 3; higher "
                             "efforts refine each image's latents for fewer bits with the same decoder "
                             "(docs/effort.md).")
QUALITY_OPTION = typer.Option(None, "--quality", "-q", help="A variable-rate model's quality, 0 (fewest bits) to "
                              "100 (default: the model's, 50); single-rate models refuse it.")
LAMBDA_OPTION = typer.Option(None, "--lambda", help="The rate weight efforts above 0 refine against "
                             "[default: the one the model was trained with].")
MAX_PIXELS_OPTION = typer.Option(None, "--max-pixels", min=1, help="Refuse images above this many pixels "
                                 "[default: $TEXPRESS_MAX_PIXELS or 100,000,000].")


@dataclass
class BatchSummary:
    images: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # extra rows of the summary table

    def table(self, title: str) -> Table:
        t = Table(title=title, show_header=False, title_justify="left")
        bpp = 8.0 * (self.bytes_out if title == "compress" else self.bytes_in) / self.pixels if self.pixels else 0.0
        rows = [("images", f"{self.images}"), ("failed", f"{self.failed}"), ("bytes in", f"{self.bytes_in:,}"),
                ("bytes out", f"{self.bytes_out:,}"), ("mean bpp", f"{bpp:.4f}"), ("time", f"{self.seconds:.2f} s")]
        for k, v in rows + self.notes:
            t.add_row(k, v)
        return t


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


class StepBar:
    """A second progress bar for long work inside one item (refinement steps of one image)."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def start(self, description: str, total: int) -> None:
        self.stop()
        self.task = self.progress.add_task(description, total=total)

    def advance(self) -> None:
        if self.task is not None:
            self.progress.advance(self.task)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def run_batch(title: str, inputs: list[Path], out_dir: Path, suffixes: set[str], out_suffix: str, force: bool,
              work: Callable[..., tuple[bytes | None, Callable[[Path], None] | None, int]],
              steps: bool = False, summary: BatchSummary | None = None) -> BatchSummary:
    """Runs `work` on each input and writes its output atomically; a failing input is reported on
    one line and the batch goes on. `work` returns (data or None, writer or None, pixels); with
    steps=True it is called as work(path, bar) with a StepBar for progress inside the item."""
    summary = summary or BatchSummary()
    jobs, problems = expand(inputs, out_dir, suffixes, out_suffix)
    for path, reason in problems:
        report_item_error(str(path), reason)
        summary.failed += 1
    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(title, total=len(jobs))
        bar = StepBar(progress)
        for job in jobs:
            try:
                if job.target.exists() and not force:
                    raise TexpressError(f"output {job.target} exists (use --force to overwrite)")
                try:
                    size_in = job.source.stat().st_size
                except OSError:
                    size_in = 0
                data, writer, pixels = work(job.source, bar) if steps else work(job.source)
                write_atomic(job.target, data, writer=writer)
                summary.images += 1
                summary.bytes_in += size_in
                summary.bytes_out += job.target.stat().st_size
                summary.pixels += pixels
            except TexpressError as exc:
                report_item_error(str(job.source), str(exc))
                summary.failed += 1
            except OSError as exc:
                report_item_error(str(job.source), exc.strerror or str(exc))
                summary.failed += 1
            except Exception as exc:  # a decoder's own bug on a crafted file must not stop the batch
                first = (str(exc).strip().splitlines() or [""])[0]
                report_item_error(str(job.source), f"unexpected error ({type(exc).__name__}: {first})")
                summary.failed += 1
            bar.stop()
            progress.advance(task)
    summary.seconds = time.perf_counter() - start
    out_console.print(summary.table(title))
    return summary


def check_effort_options(effort, lam) -> tuple[int, Optional[float]]:
    """--effort and --lambda checked before any work: a bad value is one `error:` line, exit 2."""
    try:
        return check_effort(effort), check_lambda(lam)
    except TexpressError as exc:
        raise fail(str(exc))


def _check_output_dir(output: Path) -> None:
    """The output folder must be a folder we can create: anything else stops the command (exit 2)."""
    if output.exists() and not output.is_dir():
        raise fail(f"{output}: output exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"{output}: cannot create the output folder ({exc.strerror or exc})")


def _exit_for(summary: BatchSummary) -> None:
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _load_codec(model: Optional[Path], max_pixels: Optional[int]):
    try:
        return Codec.from_checkpoint(resolve_checkpoint(model), max_pixels=max_pixels)
    except TexpressError as exc:
        raise fail(str(exc))


class ShippedCodecs:
    """Decompress without --model: the shipped model whose fingerprint each file's header names,
    each loaded once."""

    def __init__(self, max_pixels: Optional[int]):
        self.max_pixels, self.loaded = max_pixels, {}

    def for_file(self, data: bytes):
        fingerprint = bitstream.unpack(data).header.fingerprint
        if fingerprint not in self.loaded:
            self.loaded[fingerprint] = Codec.from_checkpoint(by_fingerprint(fingerprint).path,
                                                             max_pixels=self.max_pixels)
        return self.loaded[fingerprint]


def compress(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (walked recursively)."),
    output: Path = OUT_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    force: bool = FORCE_OPTION,
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,
    effort: int = EFFORT_OPTION,
    lam: Optional[float] = LAMBDA_OPTION,
    quality: Optional[str] = QUALITY_OPTION,
) -> None:
    """Compress images to .tpx files, mirroring folder structure under OUTPUT."""
    effort, lam = check_effort_options(effort, lam)
    codec = _load_codec(model, max_pixels)
    try:
        quality = codec.check_quality(quality)  # a bad value, or one for a single-rate model: one line, exit 2
        if codec.check_effort(effort):
            codec.objective(lam)  # a model without a recorded lambda stops here, before any work
    except TexpressError as exc:
        raise fail(str(exc))
    _check_output_dir(output)
    summary = BatchSummary(notes=[("effort", str(effort))])
    sizes = {"effort 0": 0, "effort": 0}

    def work(path: Path, bar: StepBar):
        image = codec.load(path)
        for note in image.warnings:
            warn(f"{path}: {note}")
        if not effort:
            return codec.encode(image, quality=quality), None, image.width * image.height
        bar.start(f"  refining {path.name}", steps_for(levels_for(codec.model)[effort], image.height, image.width))
        baseline = len(codec.encode(image, quality=quality))
        data = codec.encode(image, effort=effort, lam=lam, on_step=bar.advance, quality=quality)
        sizes["effort 0"] += baseline
        sizes["effort"] += len(data)
        summary.notes = [("effort", str(effort)), ("bytes at effort 0", f"{sizes['effort 0']:,}"),
                         ("saved vs effort 0", f"{100.0 * (1 - sizes['effort'] / sizes['effort 0']):.1f} %")]
        return data, None, image.width * image.height

    _exit_for(run_batch("compress", inputs, output, IMAGE_SUFFIXES, ".tpx", force, work, steps=True,
                        summary=summary))


def decompress(
    inputs: list[Path] = typer.Argument(..., help=".tpx files and/or folders (walked recursively)."),
    output: Path = OUT_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    force: bool = FORCE_OPTION,
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,
) -> None:
    """Restore .tpx files to PNG images (the model must be the one that made them)."""
    codecs = ShippedCodecs(max_pixels) if model is None else None
    codec = _load_codec(model, max_pixels) if model is not None else None
    _check_output_dir(output)

    def work(path: Path):
        data = path.read_bytes()
        decoding = (codec or codecs.for_file(data)).open(data)  # every check before the output is opened
        h = decoding.header
        return None, decoding.write_png, h.width * h.height

    summary = run_batch("decompress", inputs, output, {".tpx"}, ".png", force, work)
    _exit_for(summary)


def info(file: Path = typer.Argument(..., help="A .tpx file.")) -> None:
    """Print a .tpx header as JSON (no model needed); checks the checksum too."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"{file}: {exc.strerror or exc}")
    try:
        payload = bitstream.unpack(data)
    except TexpressError as exc:
        raise fail(f"{file}: {exc}")
    h = payload.header
    record = {"file": str(file), "bytes": len(data), **h.to_dict(),
              "bpp": round(bits_per_pixel(len(data), h.width, h.height), 6), "checksum": "ok"}
    out_console.print_json(json.dumps(record))


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Each preset with parameter counts and kMAC per pixel, counted from the modules."""
    rows = []
    for name, cfg in PRESETS.items():
        cx = measure(TexpressModel(cfg))
        rows.append({"preset": name, **cx.to_dict(), "latent": f"{cfg.latent_channels}xH/{DOWNSCALE}xW/{DOWNSCALE}",
                     "upscale": cfg.upscale, "config": cfg.to_dict()})
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    t = Table(title="texpress presets (kMAC per input pixel; decoder = hyper-synthesis + generator)")
    text_cols = ("preset", "latent y", "upscale", "entropy")
    for col in ("preset", "enc params", "dec params", "enc kMAC/px", "dec kMAC/px", "of it context", "latent y",
                "upscale", "entropy"):
        t.add_column(col, justify="left" if col in text_cols else "right", no_wrap=col in text_cols)
    for r in rows:
        cfg = r["config"]
        rates = f", {len(cfg['rate_lambdas'])} rates" if cfg["rate_lambdas"] else ""
        t.add_row(r["preset"], f"{r['encoder_params'] / 1e6:.2f} M", f"{r['decoder_params'] / 1e6:.2f} M",
                  f"{r['encoder_kmac_per_px']:.1f}", f"{r['decoder_kmac_per_px']:.1f}",
                  f"{r['context_kmac_per_px']:.2f}", r["latent"], r["upscale"], cfg["entropy"] + rates)
    out_console.print(t)


@models_app.command("init")
def models_init(
    preset: str = typer.Option(..., "--preset", "-p", help="Preset name (see `texpress models list`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint to write (.ckpt or .safetensors)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the initial weights."),
    upscale: Optional[str] = typer.Option(None, "--upscale", help="Override the upscale kind: deconv, subpixel "
                                          "or resize."),
    train_quant: Optional[str] = typer.Option(None, "--train-quant", help="Override what the generator reads in "
                                              "training: ste (rounded latents) or noise (latents plus noise)."),
    entropy: Optional[str] = typer.Option(None, "--entropy", help="Override the entropy model: hyperprior, "
                                          "checkerboard or channel-groups."),
    top_upscale: Optional[str] = typer.Option(None, "--top-upscale", help="Kind of the top upscale blocks (those "
                                              "nearest the image): deconv, subpixel or resize."),
    top_upscales: int = typer.Option(1, "--top-upscales", help="How many top upscale blocks --top-upscale "
                                     "replaces (1 or 2)."),
    top_kernel: int = typer.Option(0, "--top-kernel", help="Their kernel size (0: the preset's up_kernel); "
                                   "4 with deconv is a 4x4 transposed conv."),
    from_ckpt: Optional[str] = typer.Option(None, "--from", help="Start from this checkpoint's weights wherever "
                                            "names and shapes match (a shipped name, a path or models:/ URI); "
                                            "the rest (a new context model, rate gains) starts fresh."),
    fit_top: Optional[Path] = typer.Option(None, "--fit-top", help="With --from and --top-upscale: fit the new top "
                                           "upscale to random crops of this folder's photos (MSE, the rest fixed: "
                                           "the rate does not change) before writing."),
    fit_crops: int = typer.Option(64, "--fit-crops", help="Crops (128 px) --fit-top fits on."),
    force: bool = FORCE_OPTION,
) -> None:
    """Write an untrained, ready-to-code checkpoint (for tests and as a training start)."""
    if output.exists() and not force:
        raise fail(f"{output} exists (use --force to overwrite)")
    cfg = get_preset(preset)
    overrides = {k: v for k, v in {"upscale": upscale, "train_quant": train_quant, "entropy": entropy}.items() if v}
    if top_upscale:
        overrides.update(top_upscale=top_upscale, top_upscales=top_upscales, top_kernel=top_kernel)
    meta = {"preset": preset, "seed": seed, "trained": False}
    try:
        cfg = cfg.replace(**overrides)
        model = build_model(cfg, seed=seed)
        if from_ckpt:
            fresh = transplant(model, read_checkpoint(resolve_checkpoint(from_ckpt))["state_dict"])
            meta.update({"trained": True, "init_from": from_ckpt, "fresh_tensors": fresh})
        if fit_top is not None:
            if not (from_ckpt and top_upscale):
                raise fail("--fit-top needs --from and --top-upscale")
            from texpress.train.top_fit import fit_top_upscale, photo_crops

            fit = fit_top_upscale(model, photo_crops(fit_top, fit_crops, seed=seed))
            meta["top_fit"] = {"photos": str(fit_top), "crops": fit_crops, **{k: round(v, 3) for k, v in fit.items()}}
            out_console.print(f"top upscale fitted on {fit_crops} crops: {fit['psnr_before']:.2f} -> "
                              f"{fit['psnr_after']:.2f} dB", markup=False)
    except TexpressError as exc:
        raise fail(str(exc))
    try:
        fp = save_checkpoint(model, output, meta=meta)
    except OSError as exc:
        raise fail(f"{output}: cannot write the checkpoint ({exc.strerror or exc})")
    out_console.print(f"wrote {output} (preset {preset}, fingerprint {fp})", markup=False)


@models_app.command("show")
def models_show(checkpoint: Path = typer.Argument(..., help="Checkpoint file.")) -> None:
    """Print a checkpoint's config, fingerprint, metadata and measured complexity as JSON."""
    path = resolve_checkpoint(checkpoint)
    payload = read_checkpoint(path)
    cx = measure(load_model(path))
    out_console.print_json(json.dumps({"file": str(checkpoint), "fingerprint": payload["fingerprint"],
                                       "config": payload["config"], "meta": payload["meta"], **cx.to_dict()}))


@models_app.command("shipped")
def models_shipped() -> None:
    """The trained models in the repository's models/shipped/ folder (docs/models.md has their cards)."""
    try:
        models, default = shipped_models(), default_model().name
    except TexpressError as exc:
        raise fail(str(exc))
    t = Table(title=f"shipped models in {models_dir()} (val: the 100 held-out photos of docs/models.md)",
              title_justify="left")
    for col in ("name", "curve", "preset", "lambda", "val bpp", "val PSNR dB", "val MS-SSIM", "file"):
        t.add_column(col, justify="left" if col in ("name", "curve", "preset", "file") else "right")
    for m in sorted(models.values(), key=lambda m: m.name):
        val = m.info.get("val", {})
        t.add_row(m.name + (" (default)" if m.name == default else ""), m.curve, m.preset,
                  _rate_weights(m.info),
                  *(f"{val[k]:{f}}" if k in val else "-" for k, f in (("bpp", ".3f"), ("psnr", ".2f"), ("ms_ssim", ".4f"))),
                  m.path.name)
    out_console.print(t)


@models_app.command("compact")
def models_compact(
    checkpoint: Path = typer.Argument(..., help="Checkpoint to compact."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint to write."),
    force: bool = FORCE_OPTION,
) -> None:
    """Store a checkpoint's weights in float16: half the size. The weights are rounded first and the
    CDF tables rebuilt from them, so the file codes exactly what it says (its own fingerprint)."""
    if output.exists() and not force:
        raise fail(f"{output} exists (use --force to overwrite)")
    source = resolve_checkpoint(checkpoint)
    fp = compact_checkpoint(source, output)
    out_console.print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, was "
                      f"{source.stat().st_size / 1e6:.1f} MB; fingerprint {fp})", markup=False)


def _rate_weights(info: dict) -> str:
    """The lambda a model was trained with, or a variable-rate model's range of them."""
    if info.get("rate_lambdas"):
        return f"{info['rate_lambdas'][0]:g} to {info['rate_lambdas'][-1]:g}"
    return f"{info.get('lambda', '-')}"


@models_app.command("ship")
def models_ship(
    checkpoint: Path = typer.Argument(..., help="Trained checkpoint."),
    name: str = typer.Option(..., "--name", help="Shipped name, e.g. lite-q2 (the file is models/shipped/NAME.ckpt)."),
    val: list[str] = typer.Option([], "--val", help="Held-out images to measure it on (files, folders)."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="The rate weight it was trained with (recorded)."),
    default: bool = typer.Option(False, "--default", help="Make it the model compress uses without --model."),
    curve: Optional[str] = typer.Option(None, "--curve", help="The rate-distortion curve it belongs to, e.g. "
                                        "lite-gan for an adversarial variant (default: its preset)."),
) -> None:
    """Add a trained checkpoint to the shipped models: float16 weights in models/shipped/, an entry in
    its models.json with the fingerprint and the rate and quality on --val."""
    try:
        shipped = ship(resolve_checkpoint(checkpoint), name, val=val, default=default, curve=curve,
                       extra={"lambda": lam} if lam is not None else None)
    except TexpressError as exc:
        raise fail(str(exc))
    out_console.print_json(json.dumps({"name": shipped.name, **shipped.info}))


def register(app: typer.Typer) -> None:
    app.command()(compress)
    app.command()(decompress)
    app.command()(info)
    app.add_typer(models_app, name="models")
