"""The options of `texpress train`, defined once, and what they make: the training and loader configs.

`texpress train` (texpress.cli.train, a typer command) and the single-process trainer's own entry
(`python -m texpress.train`, argparse) are both built from OPTIONS, so they take the same options
with the same meaning. This module imports nothing beyond the standard library and the configs: the
entry runs on a GPU box without typer, rich, PyYAML (needed only for a params file), Ray or MLflow."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from texpress.codec.config import get_preset
from texpress.data.config import LoaderConfig
from texpress.errors import ConfigError
from texpress.params import load_params
from texpress.train.config import TrainConfig, with_options

DEFAULT_PARAMS = "params.yaml"
BACKENDS = ("ray", "torch")


@dataclass(frozen=True)
class Option:
    """One command-line option: its parameter name, flags, value type, help and default."""

    name: str
    flags: tuple[str, ...]
    kind: type
    help: str
    default: Any = None
    required: bool = False

    @property
    def switch(self) -> bool:
        return self.kind is bool


OPTIONS: tuple[Option, ...] = (
    Option("shards", ("--shards",), str, "Dataset folder (or URL) written by `texpress data ingest`."),
    Option("out", ("--output", "-o"), Path, "Output folder: model.ckpt, train_metrics.json, train_curves.tsv, "
           "curves/*.png.", required=True),
    Option("backend", ("--backend",), str, "ray: Ray Train, multi-worker and multi-node; torch: one process on one "
           "GPU or the CPU, no Ray needed.", default="ray"),
    Option("images", ("--images",), Path, "--backend torch: a folder of training photos, decoded once onto the "
           "device (instead of --shards)."),
    Option("val", ("--val",), Path, "--backend torch with --images: a folder of validation photos."),
    Option("preset", ("--preset",), str, "Model preset when training from scratch (hific, base, lite)."),
    Option("steps", ("--steps",), int, "Total steps, shared between the rate-distortion and the adversarial phase "
           "in the params' proportion (see --gan-steps)."),
    Option("gan_steps", ("--gan-steps",), int, "Steps of the adversarial phase, out of the total (0: none)."),
    Option("disc_warmup", ("--disc-warmup",), int, "The adversarial phase's first steps train D only; the codec "
           "stays on the rate-distortion loss meanwhile."),
    Option("beta", ("--beta",), float, "Weight of the adversarial term -log D(x', y)."),
    Option("k_fm", ("--feature-matching",), float, "Weight of D's feature matching (pix2pixHD) in the adversarial "
           "phase (0: off)."),
    Option("k_fft", ("--fourier",), float, "Weight of the Fourier amplitude distortion |A(x') - A(x)| (0: off)."),
    Option("lr_disc", ("--lr-disc",), float, "Adam learning rate of the discriminator."),
    Option("batch_size", ("--batch-size",), int, "Crops per batch (per worker)."),
    Option("crop", ("--crop",), int, "Side of the square training crops."),
    Option("lr", ("--lr",), float, "Adam learning rate of the codec."),
    Option("warmup", ("--warmup",), int, "Linear learning-rate warm-up steps."),
    Option("fixed_lambda", ("--lambda",), float, "A fixed lambda: loss lambda * bpp + d (default: HiFiC "
           "target-rate control)."),
    Option("target_bpp", ("--target-bpp",), float, "The rate control's target bpp."),
    Option("checkpoint_every", ("--checkpoint-every",), int, "A checkpoint every N steps."),
    Option("seed", ("--seed",), int, "Model initialisation, noise and data order."),
    Option("workers", ("--workers",), int, "Ray Train workers."),
    Option("init_from", ("--from",), Path, "Warm start from this checkpoint (model.ckpt, a Ray checkpoint folder "
           "or train_state.pt; default: train.init_from)."),
    Option("params", ("--params",), Path, "params.yaml whose `train` and `loader` sections are the defaults "
           "(default: ./params.yaml if present)."),
    Option("gpus_per_worker", ("--gpus-per-worker",), float, "GPUs per Ray worker (0: CPU)."),
    Option("run_name", ("--run-name",), str, "Ray run name; an unfinished run of that name is resumed (default: a "
           "hash of the configuration and data)."),
    Option("storage_path", ("--storage-path",), str, "Where Ray keeps runs and checkpoints (default: "
           "train.storage_path)."),
    Option("device", ("--device",), str, "--backend torch: cpu, cuda, cuda:N (default: cuda if any)."),
    Option("amp", ("--amp",), bool, "--backend torch: bfloat16 autocast of the forward passes on any device (the "
           "default on a CPU with bfloat16 instructions, with channels_last).", default=False),
    Option("fp32", ("--fp32",), bool, "--backend torch: float32 even on a CPU with bfloat16 instructions.",
           default=False),
    Option("time_limit", ("--time-limit",), float, "--backend torch: stop after this many seconds with a checkpoint "
           "(the same command continues)."),
    Option("no_mlflow", ("--no-mlflow",), bool, "--backend torch: do not log to MLflow.", default=False),
)
TORCH_ONLY = ("images", "val", "device", "time_limit", "amp", "fp32", "no_mlflow")


@dataclass
class Plan:
    """What the options ask for: the backend, the configs, the warm start (as given) and the data."""

    backend: str
    cfg: TrainConfig
    loader_cfg: LoaderConfig
    init_from: Path | str | None
    values: dict[str, Any]

    @property
    def amp(self) -> bool | None:
        """--amp True, --fp32 False, neither None (the device decides: train.device.pick_precision)."""
        return True if self.values.get("amp") else False if self.values.get("fp32") else None

    def start_line(self) -> str:
        """The line a training starts with: what it trains, for how long, where, on which crops."""
        cfg, loader_cfg = self.cfg, self.loader_cfg
        where = f"{cfg.workers} worker(s)" if self.backend == "ray" else "one process"
        start = f"from {self.init_from}" if self.init_from is not None else f"preset {cfg.preset}"
        return (f"training {start}: {cfg.rd_steps} rate-distortion + {cfg.gan_steps} adversarial steps, {where}, "
                f"patches {loader_cfg.patch_size}px x {loader_cfg.batch_size}")


def load_configs(params: Path | None, local_params: bool = True) -> tuple[TrainConfig, LoaderConfig]:
    """(TrainConfig, LoaderConfig) from the `train` and `loader` sections of a params file.

    params None: ./params.yaml when there is one (and local_params), else the dataclass defaults."""
    if params is None and local_params:
        params = Path(DEFAULT_PARAMS) if Path(DEFAULT_PARAMS).is_file() else None
    if params is None:
        return TrainConfig(), LoaderConfig()
    return TrainConfig.from_dict(load_params(params, "train")), LoaderConfig.from_dict(load_params(params, "loader"))


def plan(values: dict[str, Any], local_params: bool = True) -> Plan:
    """Check the options against each other and apply them over the params file; ConfigError when they clash.
    local_params=False: without --params, the built-in defaults even where ./params.yaml exists (the
    standalone entry, whose recipes in docs/models.md run from the repository root)."""
    v = values
    backend = v["backend"]
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be ray or torch, got {backend!r}")
    if backend == "ray":
        flags = {o.name: o.flags[0] for o in OPTIONS}
        given = [flags[name] for name in TORCH_ONLY if v.get(name) not in (None, False)]
        if given:
            raise ConfigError(f"{given[0]} needs --backend torch")
        if v["shards"] is None:
            raise ConfigError("--shards is required (or --backend torch with --images)")
    if v["params"] is not None and not Path(v["params"]).is_file():
        raise ConfigError(f"{v['params']}: no such params file")
    if v.get("amp") and v.get("fp32"):
        raise ConfigError("--amp and --fp32 contradict each other: give one")
    cfg, loader_cfg = load_configs(v["params"], local_params)
    if v["preset"] is not None:
        get_preset(v["preset"])  # unknown names fail here with the list of presets
    changes = {k: v[k] for k in ("workers", "gpus_per_worker") if v[k] is not None}
    if changes:
        cfg = cfg.replace(**changes)
    cfg, loader_cfg = with_options(cfg, loader_cfg, preset=v["preset"], steps=v["steps"], gan_steps=v["gan_steps"],
                                   disc_warmup=v["disc_warmup"], lr=v["lr"], warmup=v["warmup"],
                                   fixed_lambda=v["fixed_lambda"], target_bpp=v["target_bpp"],
                                   checkpoint_every=v["checkpoint_every"], batch_size=v["batch_size"],
                                   crop=v["crop"], seed=v["seed"], beta=v["beta"], k_fm=v["k_fm"],
                                   k_fft=v["k_fft"], lr_disc=v["lr_disc"])
    init_from = v["init_from"] if v["init_from"] is not None else cfg.init_from  # params.yaml's train.init_from
    return Plan(backend, cfg, loader_cfg, init_from, dict(v))


STANDALONE_HELP = {  # where the standalone entry's defaults differ from `texpress train`'s
    "backend": "torch: one process on one GPU or the CPU (default); ray: use `texpress train`.",
    "params": "params.yaml whose `train` and `loader` sections are the defaults (default: none, the built-in "
              "defaults).",
}


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """OPTIONS as an argparse parser for the standalone entry (no typer): --backend torch and no params
    file unless --params names one."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for o in OPTIONS:
        o = replace(o, help=STANDALONE_HELP.get(o.name, o.help), default="torch" if o.name == "backend" else o.default)
        if o.switch:
            parser.add_argument(*o.flags, dest=o.name, action="store_true", help=o.help)
        else:
            parser.add_argument(*o.flags, dest=o.name, type=o.kind, default=o.default, required=o.required,
                                help=o.help)
    return parser
