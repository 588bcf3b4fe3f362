"""`texpress train`: the DVC train stage's training, outside DVC."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from texpress.console import err_console, out_console

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
    shards: str = typer.Option(..., "--shards", help="Dataset folder (or URL) written by `texpress data ingest`."),
    out: Path = typer.Option(..., "--output", "-o", help="Output folder: model.ckpt, train_metrics.json, "
                             "train_curves.tsv, curves/*.png."),
    preset: Optional[str] = typer.Option(None, help="Model preset when training from scratch (hific, base, lite)."),
    steps: Optional[int] = typer.Option(None, help="Total steps, shared between the rate-distortion and the "
                                        "adversarial phase in the params' proportion."),
    workers: Optional[int] = typer.Option(None, help="Ray Train workers."),
    init_from: Optional[Path] = typer.Option(None, "--from", help="Warm start from this checkpoint (model.ckpt, "
                                             "a Ray checkpoint folder or train_state.pt; default: train.init_from)."),
    params: Optional[Path] = typer.Option(None, help="params.yaml whose `train` and `loader` sections are the "
                                          "defaults (default: ./params.yaml if present)."),
    gpus_per_worker: Optional[float] = typer.Option(None, help="GPUs per worker (0: CPU)."),
    run_name: Optional[str] = typer.Option(None, help="Ray run name; an unfinished run of that name is resumed "
                                           "(default: a hash of the configuration and data)."),
    storage_path: Optional[str] = typer.Option(None, help="Where Ray keeps runs and checkpoints "
                                               "(default: train.storage_path)."),
) -> None:
    """Train the codec on Ray Train (local Ray, or the cluster at $RAY_ADDRESS), tracked in MLflow."""
    from texpress.errors import ConfigError
    from texpress.train.trainer import run_training

    if params is not None and not params.is_file():
        raise ConfigError(f"{params}: no such params file")
    cfg, loader_cfg = load_configs(params)
    changes: dict[str, Any] = {}
    if preset is not None:
        from texpress.codec.config import get_preset

        get_preset(preset)  # unknown names fail here with the list of presets
        changes["preset"] = preset
    if workers is not None:
        changes["workers"] = workers
    if gpus_per_worker is not None:
        changes["gpus_per_worker"] = gpus_per_worker
    if changes:
        cfg = cfg.replace(**changes)
    if steps is not None:
        cfg = cfg.with_total_steps(steps)
    if (init_from or cfg.init_from) and preset is not None:
        from texpress.console import warn

        warn("--preset is ignored with --from: the architecture comes from the checkpoint")
    err_console.print(f"training preset {cfg.preset}: {cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial "
                      f"steps, {cfg.workers} worker(s), patches {loader_cfg.patch_size}px x {loader_cfg.batch_size}",
                      highlight=False)
    outcome = run_training(cfg, loader_cfg, shards, out, init_from=init_from or cfg.init_from, run_name=run_name,
                           storage_path=storage_path)
    out_console.print(summary_table(outcome))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
