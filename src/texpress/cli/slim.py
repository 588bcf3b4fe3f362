"""`texpress slim prune | distill | report`: slim variants of a trained model and what they cost."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from texpress.codec.checkpoint import load_model, read_checkpoint, save_checkpoint
from texpress.console import err_console, out_console
from texpress.errors import ConfigError, InputError
from texpress.registry.refs import resolve_checkpoint

slim_app = typer.Typer(no_args_is_help=True, help="Slim variants: structured pruning, distillation against a "
                       "teacher, and the cost report (kMAC/px, decode ms, memory, BD-rate).")


def _load(path: Path | str, images: Optional[Path], limit: int):
    import numpy as np
    import torch

    from texpress.codec.model import pad_to_multiple
    from texpress.slim.report import image_files, load_rgb

    crops = []
    for f in image_files(images, limit):
        rgb = load_rgb(f)[:256, :256]
        crops.append(pad_to_multiple(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255))
    side = min(min(c.shape[-2:]) for c in crops)
    return torch.cat([c[..., :side, :side] for c in crops])


@slim_app.command("prune")
def prune_command(
    source: Path = typer.Option(..., "--from", help="Teacher checkpoint (a path, a shipped name or models:/NAME@ALIAS)."),
    ratio: float = typer.Option(..., "--ratio", help="Fraction of each pruned group's channels to remove (0..0.95)."),
    out: Path = typer.Option(..., "--output", "-o", help="The pruned checkpoint to write."),
    part: str = typer.Option("generator", "--part", help="generator (decode-compatible), encoder, or all."),
    criterion: str = typer.Option("magnitude", "--criterion", help="magnitude (L2 of the weights) or taylor."),
    images: Optional[Path] = typer.Option(None, "--images", help="Photos the taylor criterion measures the loss on."),
    set_: Optional[str] = typer.Option(None, "--set", help="Config changes after pruning, e.g. up_kernel=3 (smaller "
                                       "kernels start from the centre of the pruned ones)."),
) -> None:
    """Prune channels of a trained model; the result codes like any preset (distill it next)."""
    from texpress.slim.prune import check_criterion, check_part, check_ratio, prune_model
    from texpress.slim.students import student_config, student_from_teacher
    from texpress.train.distill import decode_compatible

    check_ratio(ratio), check_part(part), check_criterion(criterion)
    path = resolve_checkpoint(source)
    teacher = load_model(path)
    batch = _load(path, images, 8) if criterion == "taylor" and images is not None else None
    pruned = prune_model(teacher, ratio, part, criterion, batch)
    model = pruned.model
    if set_:
        model = student_from_teacher(model, student_config(set_, model.config))
    meta = {"slim": {"teacher": read_checkpoint(path).get("fingerprint"), "teacher_source": str(source),
                     "pruned": {"ratio": ratio, "part": part, "criterion": criterion}, "set": set_ or "",
                     "decode_compatible": decode_compatible(model, teacher)}}
    fp = save_checkpoint(model, out, meta=meta)
    c = model.config
    out_console.print(f"pruned {escape(str(source))} -> {escape(str(out))} ({fp[:12]}): generator widths "
                      f"{'-'.join(map(str, c.gen_widths))}, encoder widths {'-'.join(map(str, c.enc_widths))}, "
                      f"decode-compatible: {'yes' if meta['slim']['decode_compatible'] else 'no'}")


@slim_app.command("distill")
def distill_command(
    teacher: Path = typer.Option(..., "--teacher", help="The trained teacher checkpoint (path, shipped name, models:/)."),
    student: str = typer.Option(..., "--student", help="A student checkpoint (from `slim prune`), a preset, a .json "
                                "config or key=value overrides of the teacher's config."),
    steps: int = typer.Option(..., "--steps", help="Training steps."),
    out: Path = typer.Option(..., "--output", "-o", help="Output folder (model.ckpt and the run's files)."),
    part: str = typer.Option("auto", "--part", help="What trains: generator (the teacher's latent stays, decode-"
                             "compatible), all, or auto (generator when the student shares the teacher's latent)."),
    backend: str = typer.Option("torch", "--backend", help="torch: this process; ray: Ray Train (--shards)."),
    images: Optional[Path] = typer.Option(None, "--images", help="--backend torch: training photos."),
    val: Optional[Path] = typer.Option(None, "--val", help="--backend torch: validation photos."),
    shards: Optional[str] = typer.Option(None, "--shards", help="Dataset folder from `texpress data ingest`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Crops per batch."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Side of the training crops."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate of the student."),
    weight: float = typer.Option(1.0, "--distill-weight", help="Weight of the student-teacher MSE (units of k_m)."),
    feature_weight: float = typer.Option(0.0, "--feature-weight", help="Weight of the attention-transfer feature loss."),
    workers: Optional[int] = typer.Option(None, "--workers", help="--backend ray: Ray Train workers."),
    params: Optional[Path] = typer.Option(None, "--params", help="params.yaml with train: and loader: defaults."),
    device: Optional[str] = typer.Option(None, "--device", help="--backend torch: cpu, cuda, cuda:N."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="--backend torch: stop after N seconds "
                                               "(the same command continues)."),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="--backend torch: do not log to MLflow."),
) -> None:
    """Fine-tune a slim student against its teacher: output distillation plus the rate-distortion terms."""
    from texpress.slim.distill import build_student, distill_config, record_student_meta, write_student
    from texpress.train.distill import latent_tensors, same_tensors
    from texpress.train.options import OPTIONS, plan

    if part not in ("auto", "generator", "all"):
        raise ConfigError(f"--part must be auto, generator or all, got {part!r}")
    teacher_path = resolve_checkpoint(teacher)
    student_ref = str(resolve_checkpoint(student)) if Path(student).suffix in (".ckpt", ".safetensors") \
        or student.startswith("models:/") else student
    trainable = part
    if part == "auto":
        model, _ = build_student(teacher_path, student_ref, "all")
        trainable = "generator" if same_tensors(latent_tensors(model), latent_tensors(load_model(teacher_path))) else "all"
    model, meta = build_student(teacher_path, student_ref, trainable)
    values = {o.name: o.default for o in OPTIONS}
    values.update(out=out, backend=backend, images=images, val=val, shards=shards, steps=steps, gan_steps=0,
                  batch_size=batch_size, crop=crop, lr=lr, workers=workers, params=params, device=device,
                  time_limit=time_limit, no_mlflow=no_mlflow)
    p = plan(values)
    cfg = distill_config(p.cfg, teacher_path, trainable, weight=weight, feature_weight=feature_weight)
    init = write_student(model, out, meta)
    err_console.print(f"distilling {student} against {teacher} ({trainable} trains): {cfg.total_steps} steps")
    if backend == "torch":
        from texpress.train.single_process import summary_lines, train_single

        outcome = train_single(cfg, p.loader_cfg, out, images=images, shards=shards, val=val, init_from=init,
                               device=device, time_limit=time_limit, mlflow=not no_mlflow)
        lines, model_path = summary_lines(outcome), outcome.model_path
    else:
        from texpress.train.ray_driver import run_training, summary_table

        outcome = run_training(cfg, p.loader_cfg, shards, out, init_from=init)
        out_console.print(summary_table(outcome))
        lines, model_path = [], Path(out) / "model.ckpt"
    if model_path is not None and Path(model_path).is_file():  # keep how the student was made beside its teacher
        record_student_meta(model_path, meta)
    for line in lines:
        out_console.print(line, highlight=False)


@slim_app.command("report")
def report_command(
    checkpoints: list[str] = typer.Argument(..., help="Checkpoints, the teacher first (paths, shipped names, models:/)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Photos for bpp, PSNR, MS-SSIM, texture and BD-rate "
                                          "(without: the cost columns only)."),
    limit: int = typer.Option(12, "--limit", help="Use the first N photos of --images."),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for report.json and pareto.png."),
    rounds: int = typer.Option(7, "--rounds", help="Timing rounds (best of N, interleaved)."),
    threads: int = typer.Option(1, "--threads", help="torch threads while timing and coding."),
) -> None:
    """One row per model: params, kMAC/px, decode ms/Mpx side by side, peak memory, quality and BD-rate."""
    import torch

    from texpress.evaluate.display import progress_bar
    from texpress.slim.report import (cost_rows, fill_quality, image_files, load_rgb, plot_pareto, timing_photo,
                                      to_json, write_json)

    if rounds < 1 or threads < 1 or limit < 1:
        raise ConfigError("--rounds, --threads and --limit must be at least 1")
    torch.set_num_threads(threads)
    paths = [resolve_checkpoint(c) for c in checkpoints]
    names = [Path(c).stem if Path(c).suffix else c for c in checkpoints]
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    photos = [load_rgb(f) for f in image_files(images, limit)] if images is not None else []
    if images is None:
        from texpress.samples import sample_photos

        samples = sample_photos()
        if not samples:
            raise InputError("no photo to time the decode on: pass --images")
        timing = timing_photo(load_rgb(samples[0]))
    else:
        timing = timing_photo(photos[0])
    rows, webp_ms = cost_rows(names, paths, timing, rounds)
    if photos:
        qualities = 5
        total = sum(len(photos) * (qualities if r.config["rate_lambdas"] else 1) for r in rows)
        with progress_bar()("coding", total) as advance:
            fill_quality(rows, paths, photos, on_item=lambda: advance(1))
    table = Table(title=f"slim report ({len(photos)} photo(s); decode of a {timing.shape[1]}x{timing.shape[0]} photo, "
                        f"{threads} thread(s), best of {rounds}; Pillow WebP decode {webp_ms:.2f} ms)")
    for col in ("model", "params enc/dec", "kMAC/px enc/dec", "dec kMAC share", "decode ms", "ms/Mpx", "x faster",
                "vs WebP", "peak MB", "bpp@50", "PSNR", "MS-SSIM", "checker", "texture", "BD-rate %", "decodes teacher's"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        compat = "-" if r.decode_compatible is None else ("yes" if r.decode_compatible else "no")
        table.add_row(escape(r.name), f"{r.encoder_params / 1e6:.2f}M/{r.decoder_params / 1e6:.2f}M",
                      f"{r.encoder_kmac_per_px:.1f}/{r.decoder_kmac_per_px:.2f}", f"{r.decoder_kmac_share:.0%}",
                      f"{r.decode_ms:.1f}", f"{r.decode_ms_per_mpx:.0f}", f"{r.speedup:.2f}",
                      f"{r.decode_ms / webp_ms:.1f}x", f"{r.peak_decode_mb:.0f}", f"{r.bpp:.3f}", f"{r.psnr:.2f}",
                      f"{r.ms_ssim:.4f}", f"{r.checkerboard:.3f}", f"{r.texture_distance:.3f}", f"{r.bd_rate:+.1f}",
                      compat)
    out_console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"images": len(photos), "threads": threads, "rounds": rounds,
                "timing_size": [int(timing.shape[1]), int(timing.shape[0])]}
        write_json(to_json(rows, webp_ms, meta), out / "report.json")
        if photos:
            plot_pareto(rows, out / "pareto.png")
        out_console.print(f"wrote {escape(str(out / 'report.json'))}" + (" and pareto.png" if photos else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(slim_app, name="slim")
