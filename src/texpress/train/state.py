"""Setup and resume: what the Ray loop and the single-process trainer build before the first step.

A `Session` is the codec and the discriminator (on the device, optionally wrapped for DDP), their
optimizers and schedules, the rate controller, the loss and the counters (step, loss history,
restarts, MLflow run id, data seed). `open_session` builds it from a training state (resume), a
warm-start payload (`--from`) or the preset; `Session.state()` is the payload a checkpoint stores.
Only torch, compressai and pytorch-msssim are imported: the single-process trainer runs where Ray,
MLflow and webdataset are not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from texpress.codec.checkpoint import build_model, read_checkpoint
from texpress.codec.config import ModelConfig, get_preset, preset_name
from texpress.codec.discriminator import ConditionalDiscriminator
from texpress.errors import CheckpointError
from texpress.files import write_atomic
from texpress.train import curves
from texpress.train.config import TrainConfig
from texpress.train.distill import Distiller, freeze_latent
from texpress.train.losses import CodecLoss, load_lpips
from texpress.train.rate_control import RateController
from texpress.train.train_step import build_trainables

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.ckpt"
METRICS_FILE = "train_metrics.json"
CURVES_FILE = "train_curves.tsv"
RUN_FILE = "run.json"  # which run made the model (run id, store, commit): beside it, never inside it
STATE_FORMAT = "texpress-train-state"


def write_run_record(folder: Path, record: dict[str, Any]) -> None:
    """folder/run.json: the provenance that changes from run to run, kept out of the model and its metrics
    so that the same training gives the same bytes (a DVC stage declares those, not this)."""
    write_atomic(Path(folder) / RUN_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def read_init(path: str | os.PathLike) -> dict[str, Any]:
    """A warm-start payload from any checkpoint: a ready-to-code model checkpoint (.ckpt or
    .safetensors), a training state file, or a Ray checkpoint folder holding one."""
    path = Path(path)
    state_file = path / STATE_FILE if path.is_dir() else path
    if path.is_dir() and not state_file.is_file():
        if (path / MODEL_FILE).is_file():
            state_file = path / MODEL_FILE
        else:
            raise CheckpointError(f"{path}: folder holds neither {STATE_FILE} nor {MODEL_FILE}")
    if state_file.name == STATE_FILE or state_file.suffix == ".pt":
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{state_file}: no such checkpoint file") from None
        except Exception as exc:
            raise CheckpointError(f"{state_file}: not a readable checkpoint ({type(exc).__name__})") from None
        if isinstance(state, dict) and state.get("format") == STATE_FORMAT:
            return {"model_config": state["model_config"], "model": state["model"], "disc": state.get("disc"),
                    "source": str(path)}
    payload = read_checkpoint(state_file)
    return {"model_config": payload["config"], "model": payload["state_dict"], "disc": None, "source": str(path),
            "fingerprint": payload.get("fingerprint")}


def make_rate_controller(cfg: TrainConfig) -> RateController:
    """HiFiC's target-rate control, or a constant lambda (both weights equal) with fixed_lambda."""
    if cfg.fixed_lambda is not None:
        return RateController(cfg.target_bpp, cfg.fixed_lambda, cfg.fixed_lambda)
    return RateController(cfg.target_bpp, cfg.lambda_a, cfg.lambda_b, ema=cfg.rate_ema)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The torch seed of one step on one rank: the quantization noise of step s is the same in a
    resumed run as in an uninterrupted one, without saving generator states."""
    digest = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Session:
    cfg: TrainConfig
    model_cfg: Any  # texpress.codec.config.ModelConfig
    t: Any  # texpress.train.train_step.Trainables
    rate: RateController
    loss_fn: Any  # texpress.train.losses.CodecLoss
    device: torch.device
    data_seed: int
    step: int = 0
    history: dict[str, list] = field(default_factory=curves.empty_history)
    resumed_from: list[int] = field(default_factory=list)
    run_id: str | None = None
    warm_start: str | None = None  # the --from source, None from scratch
    distiller: Distiller | None = None  # the teacher of a distillation run (train.teacher)

    @property
    def preset(self) -> str:
        """The preset of the model being trained (from its checkpoint on a warm start)."""
        return preset_name(self.model_cfg)

    @property
    def resumed(self) -> bool:
        return bool(self.resumed_from)

    def state(self, *, with_model: bool = True) -> dict[str, Any]:
        """Everything a resume needs (tensors and plain types: loads with weights_only=True).

        with_model=False leaves the codec's weights out (the single-process trainer stores them
        in a ready-to-code checkpoint beside this state)."""
        state = {"format": STATE_FORMAT, "step": self.step, "model_config": self.model_cfg.to_dict(),
                 **self.t.state_dict(), "rate": self.rate.state_dict(), "history": self.history,
                 "mlflow_run_id": self.run_id, "resumed_from": self.resumed_from, "data_seed": self.data_seed}
        if not with_model:
            state.pop("model")
        return state

    def objective_meta(self) -> dict[str, float]:
        """The trained rate-distortion trade-off a checkpoint records (encode efforts refine against it):
        the fixed lambda and k_m of a single-rate run; a variable-rate model's lambdas are in its config."""
        if self.cfg.fixed_lambda and not self.model_cfg.variable_rate:
            return {"lambda": self.cfg.fixed_lambda, "k_m": self.cfg.k_m}
        return {}

    def slim_meta(self) -> dict[str, Any]:
        """A distilled student's checkpoint records its teacher and whether it decodes the teacher's files."""
        if self.distiller is None:
            return {}
        return {"slim": {**self.distiller.meta(self.t.codec), "distill_weight": self.cfg.distill_weight,
                         "distill_feature": self.cfg.distill_feature}}

    def where(self) -> str:
        if self.resumed:
            return f"resuming at step {self.step}"
        return "warm start" if self.warm_start else "from scratch"


def open_session(cfg: TrainConfig, *, device: torch.device, data_seed: int, state: dict | None = None,
                 init: dict | None = None, run_id: str | None = None,
                 wrap: Callable[[torch.nn.Module, torch.nn.Module], tuple] | None = None) -> Session:
    """Build the models and optimizers; restore `state` (a resume) or load `init` (a warm start).

    wrap(model, disc) -> (model, disc): the Ray loop's DDP wrapping (it also moves them to the
    device); without it the models are moved to `device` here. A resumed run keeps the data seed
    and the MLflow run id it started with."""
    if state is not None:
        model_cfg = ModelConfig.from_dict(state["model_config"])
    elif init is not None:
        model_cfg = ModelConfig.from_dict(init["model_config"])
    else:
        model_cfg = get_preset(cfg.preset)
    model = build_model(model_cfg, seed=cfg.seed)
    disc = ConditionalDiscriminator(model_cfg.latent_channels)
    source = state if state is not None else init
    if source is not None:
        model.load_state_dict(source["model"])
        if source.get("disc") is not None:
            disc.load_state_dict(source["disc"])
    model.train()
    disc.train()
    distiller = None
    if cfg.teacher is not None:
        distiller = Distiller.load(cfg.teacher, model_cfg, weight=cfg.distill_weight,
                                   feature_weight=cfg.distill_feature, trainable=cfg.trainable, device=device)
        distiller.check_student(model)
        distiller.attach(model)
    if cfg.trainable == "generator":
        freeze_latent(model)  # before the DDP wrapping: DDP then reduces the generator's gradients only
    if wrap is not None:
        model, disc = wrap(model, disc)
    else:
        model, disc = model.to(device), disc.to(device)
    t = build_trainables(model, disc, cfg)
    lpips_model = load_lpips(cfg.lpips_weights, cfg.lpips_net).to(device) if cfg.lpips_weights else None
    session = Session(cfg=cfg, model_cfg=model_cfg, t=t, rate=make_rate_controller(cfg),
                      loss_fn=CodecLoss(cfg.k_m, cfg.k_ms_ssim, cfg.k_p, lpips_model, k_fft=cfg.k_fft), device=device,
                      data_seed=data_seed, run_id=run_id,
                      warm_start=str(init.get("source")) if init is not None else None, distiller=distiller)
    if state is not None:
        t.load_optim_state(state)
        session.rate.load_state_dict(state["rate"])
        session.step = int(state["step"])
        session.history = curves.truncate(state["history"], session.step)
        session.resumed_from = [*state.get("resumed_from", []), session.step]
        session.run_id = state.get("mlflow_run_id") or run_id
        session.data_seed = int(state.get("data_seed", data_seed))
    return session
