"""`texpress train`: the DVC train stage's training, outside DVC (Ray Train, or --backend torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from texpress.console import err_console, out_console
from texpress.registry.refs import resolve_checkpoint

DEFAULT_PARAMS = "params.yaml"


def load_configs(params: Path | None) -> tuple[Any, Any]:
    """(TrainConfig, LoaderConfig) from the `train` and `loader` sections of a params file.

    params None: ./params.yaml when there is one, else the dataclass defaults."""
    from texpress.data.config import LoaderConfig
    from texpress.params import load_params
    from texpress.train.config import TrainConfig

    if params is None:
        params = Path(DEFAULT_PARAMS) if Path(DEFAULT_PARAMS).is_file() else None
    if params is None:
        return TrainConfig(), LoaderConfig()
    return TrainConfig.from_dict(load_params(params, "train")), LoaderConfig.from_dict(load_params(params, "loader"))


def summary_table(outcome) -> Any:
    from rich.table import Table
    from rich.text import Text

    m = outcome.metrics
    table = Table(title="training", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", str(outcome.model_path)),
        ("steps", f"{m.get('step')} on {m.get('world_size')} worker(s)"
                  + (f", resumed at step {', '.join(map(str, m['resumed_from']))}" if m.get("resumed_from") else "")),
    ]
    if "val_bpp" in m:
        rows.append(("validation", f"{m['val_bpp']:.4f} bpp (bitstream), {m['val_psnr']:.2f} dB PSNR, "
                                   f"MS-SSIM {m['val_ms_ssim']:.4f} on {m.get('val_images')} image(s)"))
    if "train_bpp" in m:
        rows.append(("last batch", f"{m['train_bpp']:.4f} bpp, {m['train_psnr']:.2f} dB PSNR"))
    rows += [
        ("MLflow", f"run {outcome.mlflow_run_id} in {outcome.tracking_uri}"),
        ("Ray run", f"{outcome.run_name} in {outcome.storage_path}"),
        ("time", f"{outcome.seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, Text(v))  # paths may hold [brackets]: plain text, not rich markup
    return table


def train_command(
    shards: Optional[str] = typer.Option(None, "--shards", help="Dataset folder (or URL) written by "
                                         "`texpress data ingest`."),
    out: Path = typer.Option(..., "--output", "-o", help="Output folder: model.ckpt, train_metrics.json, "
                             "train_curves.tsv, curves/*.png."),
    backend: str = typer.Option("ray", help="ray: Ray Train, multi-worker and multi-node; torch: one process "
                                "on one GPU or the CPU, no Ray needed."),
    images: Optional[Path] = typer.Option(None, help="--backend torch: a folder of training photos, decoded "
                                          "once onto the device (instead of --shards)."),
    val: Optional[Path] = typer.Option(None, help="--backend torch with --images: a folder of validation photos."),
    preset: Optional[str] = typer.Option(None, help="Model preset when training from scratch (hific, base, lite)."),
    steps: Optional[int] = typer.Option(None, help="Total steps, shared between the rate-distortion and the "
                                        "adversarial phase in the params' proportion (see --gan-steps)."),
    gan_steps: Optional[int] = typer.Option(None, help="Steps of the adversarial phase, out of the total (0: none)."),
    disc_warmup: Optional[int] = typer.Option(None, help="The adversarial phase's first steps train D only; the "
                                              "codec stays on the rate-distortion loss meanwhile."),
    batch_size: Optional[int] = typer.Option(None, help="Crops per batch (per worker)."),
    crop: Optional[int] = typer.Option(None, help="Side of the square training crops."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate of the codec."),
    warmup: Optional[int] = typer.Option(None, help="Linear learning-rate warm-up steps."),
    fixed_lambda: Optional[float] = typer.Option(None, "--lambda", help="A fixed lambda: loss lambda * bpp + d "
                                                 "(default: HiFiC target-rate control)."),
    target_bpp: Optional[float] = typer.Option(None, help="The rate control's target bpp."),
    checkpoint_every: Optional[int] = typer.Option(None, help="A checkpoint every N steps."),
    seed: Optional[int] = typer.Option(None, help="Model initialisation, noise and data order."),
    workers: Optional[int] = typer.Option(None, help="Ray Train workers."),
    init_from: Optional[Path] = typer.Option(None, "--from", help="Warm start from this checkpoint (model.ckpt, "
                                             "a Ray checkpoint folder or train_state.pt; default: train.init_from)."),
    params: Optional[Path] = typer.Option(None, help="params.yaml whose `train` and `loader` sections are the "
                                          "defaults (default: ./params.yaml if present)."),
    gpus_per_worker: Optional[float] = typer.Option(None, help="GPUs per Ray worker (0: CPU)."),
    run_name: Optional[str] = typer.Option(None, help="Ray run name; an unfinished run of that name is resumed "
                                           "(default: a hash of the configuration and data)."),
    storage_path: Optional[str] = typer.Option(None, help="Where Ray keeps runs and checkpoints "
                                               "(default: train.storage_path)."),
    device: Optional[str] = typer.Option(None, help="--backend torch: cpu, cuda, cuda:N (default: cuda if any)."),
    amp: bool = typer.Option(False, "--amp", help="--backend torch: bfloat16 autocast of the forward passes."),
    time_limit: Optional[float] = typer.Option(None, help="--backend torch: stop after this many seconds with "
                                               "a checkpoint (the same command continues)."),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="--backend torch: do not log to MLflow."),
) -> None:
    """Train the codec: on Ray Train (local Ray, or the cluster at $RAY_ADDRESS), or in this process
    (--backend torch); tracked in MLflow."""
    from texpress.errors import ConfigError
    from texpress.train.config import with_options

    if backend not in ("ray", "torch"):
        raise ConfigError(f"--backend must be ray or torch, got {backend!r}")
    torch_only = {"--images": images, "--val": val, "--device": device, "--time-limit": time_limit,
                  "--amp": amp or None, "--no-mlflow": no_mlflow or None}
    if backend == "ray":
        given = [k for k, v in torch_only.items() if v is not None]
        if given:
            raise ConfigError(f"{given[0]} needs --backend torch")
        if shards is None:
            raise ConfigError("--shards is required (or --backend torch with --images)")
    if params is not None and not params.is_file():
        raise ConfigError(f"{params}: no such params file")
    cfg, loader_cfg = load_configs(params)
    if preset is not None:
        from texpress.codec.config import get_preset

        get_preset(preset)  # unknown names fail here with the list of presets
    changes: dict[str, Any] = {}
    if workers is not None:
        changes["workers"] = workers
    if gpus_per_worker is not None:
        changes["gpus_per_worker"] = gpus_per_worker
    if changes:
        cfg = cfg.replace(**changes)
    cfg, loader_cfg = with_options(cfg, loader_cfg, preset=preset, steps=steps, gan_steps=gan_steps,
                                   disc_warmup=disc_warmup, lr=lr, warmup=warmup, fixed_lambda=fixed_lambda,
                                   target_bpp=target_bpp, checkpoint_every=checkpoint_every, batch_size=batch_size,
                                   crop=crop, seed=seed)
    init_from = init_from if init_from is not None else cfg.init_from  # params.yaml's train.init_from
    if init_from is not None and preset is not None:
        from texpress.console import warn

        warn("--preset is ignored with --from: the architecture comes from the checkpoint")
    init_path = resolve_checkpoint(init_from) if init_from is not None else None
    where = f"{cfg.workers} worker(s)" if backend == "ray" else "one process"
    start = f"from {init_from}" if init_from is not None else f"preset {cfg.preset}"
    err_console.print(f"training {start}: {cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial "
                      f"steps, {where}, patches {loader_cfg.patch_size}px x {loader_cfg.batch_size}",
                      highlight=False)
    if backend == "torch":
        from rich.text import Text

        from texpress.train.single import summary_lines, train_single

        outcome = train_single(cfg, loader_cfg, out, images=images, shards=shards, val=val, init_from=init_path,
                               device=device, amp=amp, time_limit=time_limit, mlflow=not no_mlflow)
        for line in summary_lines(outcome):
            out_console.print(Text(line))
        return
    from texpress.train.trainer import run_training

    outcome = run_training(cfg, loader_cfg, shards, out, init_from=init_path, run_name=run_name,
                           storage_path=storage_path)
    out_console.print(summary_table(outcome))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
