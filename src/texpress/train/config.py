"""Training configuration: the `train:` section of params.yaml, field for field.

The patch size, batch size and loader mechanics live in the `loader:` section
(texpress.data.config.LoaderConfig); everything about the optimisation, the rate control, the Ray
cluster and the tracking lives here. `from_dict` refuses unknown keys, so a typo in params.yaml is
an error instead of a silent default.

Loss scaling (see docs/training.md): rates are bits per pixel of y and z; the MSE that k_m weights
is measured on the 0-255 scale, as in HiFiC, so the HiFiC value k_m = 0.075 * 2^-5 applies as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from texpress.codec.config import get_preset
from texpress.errors import ConfigError
from texpress.params import build_section

HIFIC_K_M = 0.075 * 2**-5  # 0.00234375, for MSE on the 0-255 scale


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    preset: model preset when training from scratch (a warm start keeps its checkpoint's architecture).
    rd_steps, gan_steps: steps of phase 1 (rate-distortion only) and phase 2 (adversarial).
    workers, cpus_per_worker, gpus_per_worker: the Ray ScalingConfig (gpus_per_worker > 0 uses GPUs).
    lr, lr_aux, lr_disc: Adam learning rates of the codec, the entropy-bottleneck quantiles and D.
    lr_decay, lr_decay_at: the codec and D learning rates are multiplied by lr_decay once
        lr_decay_at of the current phase is done (HiFiC: 0.1 at half of each phase).
    warmup_steps: the codec's learning rate rises linearly over the first warmup_steps steps (0: off).
    target_bpp, lambda_a, lambda_b: HiFiC rate control; lambda = lambda_a while the rate is above
        target_bpp, lambda_b below it. rate_ema: smoothing of the rate the decision looks at
        (0 = the current batch, as HiFiC). fixed_lambda: a constant lambda instead (the plain
        rate-distortion loss fixed_lambda * bpp + d; null = rate control).
    k_m: weight of the MSE (0-255 scale). k_ms_ssim: weight of (1 - MS-SSIM), 0 = off.
    k_p, lpips_weights, lpips_net: LPIPS weight, a local weights file (never downloaded; null = off)
        and its backbone (alex, vgg, squeeze).
    k_fft: weight of the Fourier amplitude term |A(x') - A(x)| (losses.fourier_amplitude_loss), 0 = off.
    beta: weight of the adversarial term -log D(x', y) in phase 2.
    k_fm: weight of D's feature matching (pix2pixHD) in phase 2, 0 = off.
    disc_warmup_steps: the first steps of phase 2 train D only: the codec goes on with the
        rate-distortion loss (beta 0) until D has learned to tell x from x' (a fresh D facing a
        trained codec sits at chance for hundreds of steps and gives the generator no signal).
    clip_grad_norm: max gradient norm of the codec and D (0 = off).
    checkpoint_every: a Ray checkpoint every K steps (a failure loses at most K steps).
    keep_checkpoints: Ray checkpoints kept in storage.
    val_every: validation every V steps on val_images images of the val split.
    grid_images: images in the originals-beside-reconstructions grid logged at each validation.
    log_every: MLflow metrics are logged for every step and sent every log_every steps; progress
        lines are printed at the same interval.
    max_failures: worker failures Ray Train recovers from (FailureConfig; -1 = unlimited).
    experiment: MLflow experiment name. storage_path: where Ray keeps runs and checkpoints.
    seed: model initialisation and data order.
    init_from: warm start from this checkpoint (model.ckpt, a Ray checkpoint folder, train_state.pt, or
        a `models:/NAME@ALIAS` reference where the registry resolves it); null trains from scratch.
    teacher: distillation (train.distill): a trained model checkpoint the student (the warm start)
        learns from; null trains without one. distill_weight: weight of the student-teacher MSE, in
        units of k_m (1: as much as the MSE to the photo). distill_feature: weight of the attention-transfer
        feature loss on the upscale blocks' outputs (0: off). trainable: `all`, or `generator` (the
        encoder and entropy model stay frozen, so the student decodes the teacher's files).
    """

    preset: str = "lite"
    rd_steps: int = 400
    gan_steps: int = 50
    workers: int = 2
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    lr: float = 3e-4
    lr_aux: float = 1e-3
    lr_disc: float = 1e-4
    lr_decay: float = 0.1
    lr_decay_at: float = 0.8
    warmup_steps: int = 0
    target_bpp: float = 0.3
    lambda_a: float = 2.0
    lambda_b: float = 2.0**-4
    rate_ema: float = 0.0
    fixed_lambda: float | None = None
    k_m: float = HIFIC_K_M
    k_ms_ssim: float = 0.0
    k_p: float = 1.0
    lpips_weights: str | None = None
    lpips_net: str = "alex"
    beta: float = 0.15
    k_fm: float = 0.0
    k_fft: float = 0.0
    disc_warmup_steps: int = 0
    clip_grad_norm: float = 1.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    val_every: int = 100
    val_images: int = 8
    grid_images: int = 4
    log_every: int = 20
    max_failures: int = 2
    experiment: str = "texpress"
    storage_path: str = "ray_results"
    seed: int = 0
    init_from: str | None = None
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_feature: float = 0.0
    trainable: str = "all"

    def __post_init__(self) -> None:
        ints = ("rd_steps", "gan_steps", "disc_warmup_steps", "warmup_steps", "workers", "cpus_per_worker",
                "checkpoint_every", "keep_checkpoints", "val_every", "val_images", "grid_images", "log_every",
                "max_failures", "seed")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"train.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        floats = ("gpus_per_worker", "lr", "lr_aux", "lr_disc", "lr_decay", "lr_decay_at", "target_bpp", "lambda_a",
                  "lambda_b", "rate_ema", "k_m", "k_ms_ssim", "k_p", "beta", "k_fm", "k_fft", "clip_grad_norm",
                  "distill_weight", "distill_feature")
        for name in floats:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"train.{name} must be a number, got {value!r}")
            if value < 0:
                raise ConfigError(f"train.{name} must not be negative, got {value}")
            object.__setattr__(self, name, float(value))
        if self.fixed_lambda is not None:
            if isinstance(self.fixed_lambda, bool) or not isinstance(self.fixed_lambda, (int, float)) \
                    or self.fixed_lambda <= 0:
                raise ConfigError(f"train.fixed_lambda must be a positive number or null, got {self.fixed_lambda!r}")
            object.__setattr__(self, "fixed_lambda", float(self.fixed_lambda))
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must not be negative, got {self.warmup_steps}")
        if self.rd_steps < 0 or self.gan_steps < 0 or self.rd_steps + self.gan_steps < 1:
            raise ConfigError("train.rd_steps + train.gan_steps must be at least 1 (neither negative)")
        if not 0 <= self.disc_warmup_steps <= self.gan_steps:
            raise ConfigError(f"train.disc_warmup_steps must be between 0 and train.gan_steps ({self.gan_steps}), "
                              f"got {self.disc_warmup_steps}")
        for name in ("workers", "cpus_per_worker", "checkpoint_every", "keep_checkpoints", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.val_images < 0 or self.grid_images < 0:
            raise ConfigError("train.val_images and train.grid_images must not be negative")
        if self.max_failures < -1:
            raise ConfigError(f"train.max_failures must be -1 (unlimited) or more, got {self.max_failures}")
        if self.lr <= 0 or self.lr_aux <= 0 or self.lr_disc <= 0:
            raise ConfigError("train.lr, train.lr_aux and train.lr_disc must be positive")
        if not 0.0 <= self.lr_decay_at <= 1.0:
            raise ConfigError(f"train.lr_decay_at is a fraction of a phase (0..1), got {self.lr_decay_at}")
        if not 0.0 <= self.rate_ema < 1.0:
            raise ConfigError(f"train.rate_ema must be in [0, 1), got {self.rate_ema}")
        if self.target_bpp <= 0:
            raise ConfigError("train.target_bpp must be positive")
        if self.lpips_net not in ("alex", "vgg", "squeeze"):
            raise ConfigError(f"train.lpips_net must be alex, vgg or squeeze, got {self.lpips_net!r}")

        get_preset(self.preset)  # an unknown name is a ConfigError naming the presets
        if not self.experiment:
            raise ConfigError("train.experiment must not be empty")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ConfigError(f"train.init_from must be a checkpoint path or a models:/ reference, got {self.init_from!r}")
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher):
            raise ConfigError(f"train.teacher must be a checkpoint path or null, got {self.teacher!r}")
        if self.trainable not in ("all", "generator"):
            raise ConfigError(f"train.trainable must be all or generator, got {self.trainable!r}")

    @property
    def total_steps(self) -> int:
        return self.rd_steps + self.gan_steps

    def phase(self, step: int) -> str:
        """What step `step` (0-based) trains: "rd" (phase 1), "D" (the adversarial phase's D warm-up:
        D alone, the codec on the rate-distortion loss) or "gan"."""
        if step < self.rd_steps:
            return "rd"
        return "D" if step < self.rd_steps + self.disc_warmup_steps else "gan"

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def with_total_steps(self, steps: int) -> "TrainConfig":
        """N total steps shared between the two phases in the proportion rd_steps : gan_steps."""
        if steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {steps}")
        rd = round(steps * self.rd_steps / self.total_steps)
        return self.replace(rd_steps=rd, gan_steps=steps - rd)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        return build_section(cls, d, "train")

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)


def with_options(cfg: TrainConfig, loader_cfg: Any, *, preset: str | None = None, steps: int | None = None,
                 gan_steps: int | None = None, disc_warmup: int | None = None, lr: float | None = None,
                 warmup: int | None = None, fixed_lambda: float | None = None, target_bpp: float | None = None,
                 checkpoint_every: int | None = None, batch_size: int | None = None, crop: int | None = None,
                 seed: int | None = None, beta: float | None = None, k_fm: float | None = None,
                 k_fft: float | None = None, lr_disc: float | None = None) -> tuple[TrainConfig, Any]:
    """(TrainConfig, LoaderConfig) with the command-line overrides that are not None.

    steps is the total; gan_steps (0: no adversarial phase) takes its share from it, else the
    total is split in the proportion rd_steps : gan_steps; disc_warmup (D-only steps) counts within
    the adversarial phase."""
    changes = {k: v for k, v in {"preset": preset, "lr": lr, "warmup_steps": warmup, "fixed_lambda": fixed_lambda,
                                 "target_bpp": target_bpp, "checkpoint_every": checkpoint_every,
                                 "seed": seed, "beta": beta, "k_fm": k_fm, "k_fft": k_fft,
                                 "lr_disc": lr_disc}.items() if v is not None}
    if changes:
        cfg = cfg.replace(**changes)
    if gan_steps is not None:
        total = steps if steps is not None else cfg.total_steps
        if not 0 <= gan_steps < total:
            raise ConfigError(f"--gan-steps must be at least 0 and below the total steps ({total}), got {gan_steps}")
        warm = {"disc_warmup_steps": disc_warmup} if disc_warmup is not None else {}
        cfg = cfg.replace(rd_steps=total - gan_steps, gan_steps=gan_steps, **warm)  # one check of the three
    elif steps is not None:
        cfg = cfg.with_total_steps(steps)
    if disc_warmup is not None:
        cfg = cfg.replace(disc_warmup_steps=disc_warmup)
    loader_changes = {k: v for k, v in {"batch_size": batch_size, "patch_size": crop, "seed": seed}.items()
                      if v is not None}
    if loader_changes:
        loader_cfg = loader_cfg.replace(**loader_changes)
    return cfg, loader_cfg
