"""Distillation: training a slim student against a trained teacher (texpress.slim builds the students).

A run with `train.teacher` set adds to the student's usual rate-distortion loss (and, in the
adversarial phase, its adversarial term) an output distillation term, the MSE between the student's
and the teacher's reconstructions of the same latents, weighted like the MSE to the photo:

    L = lambda * r + d(x, x_s) + distill_weight * k_m * MSE_255(x_s, x_t) + distill_feature * AT(s, t)

AT is an optional feature loss: attention transfer (Zagoruyko & Komodakis 2017) on the output of every
upscale block, the L2-normalised channel mean of the squared activations, so a student of any width
learns where the teacher's features are strong without a learned adapter.

- `train.trainable: generator` trains the student's generator only: the encoder, the hyperprior, the
  context and the rate gains are frozen (their parameters require no gradient before the DDP wrapping,
  and the entropy bottleneck's aux step has nothing to do), so the latent stays the teacher's and the
  student decodes the teacher's files. The teacher's generator reads the student's y_hat itself.
- otherwise the teacher codes the same crops at the same quality (a variable-rate teacher: the random
  level of each crop, drawn as the variable-rate trainer draws it) in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from texpress.codec.checkpoint import read_checkpoint
from texpress.codec.config import ModelConfig
from texpress.codec.model import TexpressModel
from texpress.errors import CheckpointError, ConfigError
from texpress.train.losses import MSE_255

TRAINABLE = ("all", "generator")
LATENT_PREFIXES = ("generator.",)  # what a generator-only student may change; everything else decodes y


MASKED_CONTEXT = "context.context.weight"


def _effective(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with the checkerboard context's weight masked: CompressAI's masked conv zeroes the
    masked taps in place at its first forward pass, which changes no output."""
    state = dict(model.state_dict())
    if MASKED_CONTEXT in state:
        state[MASKED_CONTEXT] = state[MASKED_CONTEXT] * state["context.context.mask"]
    return state


def latent_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the state dict outside the generator: the encoder, hyperprior, entropy models,
    context and gains (what decides y and how it is coded)."""
    return {k: v for k, v in _effective(model).items() if not k.startswith(LATENT_PREFIXES)}


def decoding_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a decoder uses to recover y from a file: all but the encoder's, h_a's and the generator's."""
    skip = ("generator.", "encoder.", "h_a.")
    return {k: v for k, v in _effective(model).items() if not k.startswith(skip)}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def decode_compatible(student: nn.Module, teacher: nn.Module) -> bool:
    """True when the student decodes the teacher's files: it recovers the same y_hat from them (same
    hyper-synthesis, entropy tables, context and gains); only its generator may differ."""
    return same_tensors(decoding_tensors(student), decoding_tensors(teacher))


def check_pair(student_cfg: ModelConfig, teacher_cfg: ModelConfig, trainable: str) -> None:
    """ConfigError when the student cannot learn from the teacher."""
    if trainable not in TRAINABLE:
        raise ConfigError(f"train.trainable must be one of {', '.join(TRAINABLE)}, got {trainable!r}")
    if student_cfg.rate_lambdas != teacher_cfg.rate_lambdas:
        raise ConfigError("student and teacher have different rate levels (rate_lambdas): the same quality "
                          "would mean different rates")
    if trainable == "generator" and (student_cfg.latent_channels != teacher_cfg.latent_channels
                                     or student_cfg.entropy != teacher_cfg.entropy):
        raise ConfigError(f"a generator-only student needs the teacher's latent ({teacher_cfg.latent_channels} "
                          f"channels, {teacher_cfg.entropy}); it has {student_cfg.latent_channels}, "
                          f"{student_cfg.entropy}")


def freeze_latent(model: TexpressModel) -> None:
    """Generator-only training: everything but the generator stops requiring gradients."""
    for name, p in model.named_parameters():
        if not name.startswith(LATENT_PREFIXES):
            p.requires_grad_(False)


def attention_map(h: torch.Tensor) -> torch.Tensor:
    """(N, H*W) L2-normalised channel mean of h^2 (attention transfer)."""
    return F.normalize(h.float().pow(2).mean(dim=1).flatten(1), dim=1)


class _Features:
    """The outputs of a generator's upscale blocks, captured by forward hooks."""

    def __init__(self, generator: nn.Module):
        self.maps: list[torch.Tensor] = []
        self.armed = False  # only the training step's forward passes are kept (not validation's)
        self.handles = [block.register_forward_hook(self._hook) for block in generator.ups]

    def _hook(self, module, inputs, output) -> None:
        if self.armed:
            self.maps.append(output)

    def arm(self) -> None:
        self.maps, self.armed = [], True

    def take(self) -> list[torch.Tensor]:
        maps, self.maps, self.armed = self.maps, [], False
        return maps


@dataclass
class Distiller:
    """The frozen teacher and the weights of the distillation terms."""

    teacher: TexpressModel
    weight: float
    feature_weight: float
    generator_only: bool
    teacher_fingerprint: str
    source: str
    _student_features: _Features | None = field(default=None, repr=False)
    _teacher_features: _Features | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str, student_cfg: ModelConfig, *, weight: float, feature_weight: float, trainable: str,
             device: torch.device) -> "Distiller":
        payload = read_checkpoint(path)
        try:
            teacher = TexpressModel(ModelConfig.from_dict(payload["config"]))
            teacher.load_state_dict(payload["state_dict"])
        except (ConfigError, RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{path}: teacher checkpoint does not match its config "
                                  f"({str(exc).splitlines()[0]})") from None
        check_pair(student_cfg, teacher.config, trainable)
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return cls(teacher, weight, feature_weight, trainable == "generator", payload.get("fingerprint") or "",
                   str(path))

    def attach(self, student: TexpressModel) -> None:
        """Feature hooks on both generators (only with a feature weight)."""
        if self.feature_weight > 0 and self._student_features is None:
            self._student_features = _Features(student.generator)
            self._teacher_features = _Features(self.teacher.generator)

    def check_student(self, student: TexpressModel) -> None:
        """A generator-only student must start from the teacher's latent side (slim builds it so)."""
        if self.generator_only and not same_tensors(latent_tensors(student), latent_tensors(self.teacher)):
            raise ConfigError("a generator-only student must share the teacher's encoder, hyperprior and entropy "
                              "model (build it with `texpress slim prune` or `slim distill --student CONFIG`)")

    def forward(self, model: nn.Module, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """(the student's outputs, the teacher's reconstruction of the same crops at the same levels)."""
        for features in (self._student_features, self._teacher_features):
            if features is not None:
                features.arm()
        if self.generator_only:
            out = model(x)
            with torch.no_grad():
                x_t = self.teacher.generator(out["y_hat"].detach())
            return out, x_t
        quality = None
        if self.teacher.config.variable_rate:  # one random level per crop, shared by student and teacher
            quality = torch.rand(x.shape[0], dtype=torch.float64, device=x.device) * 100.0
        out = model(x, quality)
        with torch.no_grad():
            x_t = self.teacher(x, quality)["x_hat"]
        return out, x_t

    def loss(self, out: dict, x_t: torch.Tensor, k_m: float) -> dict[str, torch.Tensor]:
        x_s = out["x_hat"].float()
        terms = {"distill_mse": F.mse_loss(x_s, x_t.float()) * MSE_255}
        total = self.weight * k_m * terms["distill_mse"]
        if self._student_features is not None:
            student, teacher = self._student_features.take(), self._teacher_features.take()
            pairs = [(s, t) for s, t in zip(student, teacher) if s.shape[-2:] == t.shape[-2:]]  # same resolution
            feat = sum((F.mse_loss(attention_map(s), attention_map(t)) for s, t in pairs), x_s.new_zeros(()))
            terms["distill_feature"] = feat
            total = total + self.feature_weight * feat
        terms["distill"] = total
        return terms

    def meta(self, student: nn.Module) -> dict:
        """What a student's checkpoint records about its teacher."""
        return {"teacher": self.teacher_fingerprint, "teacher_source": self.source,
                "trainable": "generator" if self.generator_only else "all",
                "decode_compatible": decode_compatible(student, self.teacher)}
