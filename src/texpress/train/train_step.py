"""One training step: generator (codec) update, discriminator update, entropy-bottleneck aux update.

Works the same on one process and under DDP (models wrapped by ray.train.torch.prepare_model):

- the codec's forward goes through its DDP wrapper, so its gradients are averaged across ranks;
- in the generator step D only provides gradients to x' (its parameters are frozen and it is
  called unwrapped, so no DDP reduction of D is started);
- the discriminator sees real and decoded images in one batch (one forward through its DDP
  wrapper; spectral norm's power-iteration buffers are broadcast once per step);
- the aux loss only reaches the entropy bottleneck's quantiles, which the codec's forward does
  not use (hence find_unused_parameters=True); their gradients are averaged by hand.
- the batch rate that rate control sees is averaged over the ranks, so every rank uses the same lambda.

`amp` (a dtype, e.g. torch.bfloat16) runs the codec's and D's forward passes under autocast; the
losses are computed in float32 from their outputs.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from texpress.train.config import TrainConfig
from texpress.train.distill import Distiller
from texpress.train.losses import (CodecLoss, discriminator_loss, feature_matching_loss, generator_adversarial_loss,
                                   weighted_rate)
from texpress.train.rate_control import RateController


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)


def split_parameters(codec: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(main, aux): CompressAI's convention, the entropy bottleneck's `quantiles` train on the aux loss."""
    main, aux = [], []
    for name, p in unwrap(codec).named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else main).append(p)
    return main, aux


def phase_lr_factor(step: int, *, start: int, length: int, decay: float, decay_at: float) -> float:
    """Learning-rate factor at global `step` within a phase [start, start + length)."""
    if length <= 0:
        return 1.0
    return decay if (step - start) >= decay_at * length else 1.0


def warmup_factor(step: int, warmup: int) -> float:
    """Linear warm-up over the first `warmup` steps of the run: (step + 1) / warmup, then 1."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _codec_factor(step: int, *, rd_steps: int, gan_steps: int, decay: float, decay_at: float,
                  warmup: int = 0) -> float:
    if step < rd_steps:
        factor = phase_lr_factor(step, start=0, length=rd_steps, decay=decay, decay_at=decay_at)
    else:
        factor = phase_lr_factor(step, start=rd_steps, length=gan_steps, decay=decay, decay_at=decay_at)
    return factor * warmup_factor(step, warmup)


def _disc_factor(step: int, *, gan_steps: int, decay: float, decay_at: float) -> float:
    return phase_lr_factor(step, start=0, length=gan_steps, decay=decay, decay_at=decay_at)


@dataclass
class Trainables:
    """Everything a step updates. model and disc may be DDP-wrapped."""

    model: nn.Module
    disc: nn.Module
    main_params: list[nn.Parameter]
    aux_params: list[nn.Parameter]
    opt_g: torch.optim.Optimizer
    opt_aux: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: LambdaLR
    sched_d: LambdaLR

    @property
    def codec(self) -> nn.Module:
        return unwrap(self.model)

    @property
    def discriminator(self) -> nn.Module:
        return unwrap(self.disc)

    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.codec.state_dict().items()},
            "disc": {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()},
            "opt_g": self.opt_g.state_dict(), "opt_aux": self.opt_aux.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
        }

    def load_optim_state(self, state: dict) -> None:
        for name in ("opt_g", "opt_aux", "opt_d", "sched_g", "sched_d"):
            getattr(self, name).load_state_dict(state[name])


def build_trainables(model: nn.Module, disc: nn.Module, cfg: TrainConfig) -> Trainables:
    """Adam for the codec, the quantiles (aux) and D; LambdaLR warm-up and decay within each phase."""
    main, aux = split_parameters(model)
    opt_g = torch.optim.Adam(main, lr=cfg.lr)
    # a frozen entropy bottleneck (generator-only distillation) has no aux parameters: an idle placeholder
    opt_aux = torch.optim.Adam(aux or [nn.Parameter(torch.zeros(1))], lr=cfg.lr_aux)
    opt_d = torch.optim.Adam([p for p in unwrap(disc).parameters() if p.requires_grad], lr=cfg.lr_disc)
    sched_g = LambdaLR(opt_g, functools.partial(_codec_factor, rd_steps=cfg.rd_steps, gan_steps=cfg.gan_steps,
                                                decay=cfg.lr_decay, decay_at=cfg.lr_decay_at,
                                                warmup=cfg.warmup_steps))
    sched_d = LambdaLR(opt_d, functools.partial(_disc_factor, gan_steps=cfg.gan_steps, decay=cfg.lr_decay,
                                                decay_at=cfg.lr_decay_at))
    return Trainables(model, disc, main, aux, opt_g, opt_aux, opt_d, sched_g, sched_d)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters of `module` do not require grad inside the block (gradients still flow to inputs)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _f(value: torch.Tensor) -> float:
    return float(value.detach())


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar over all ranks (the value itself on one process)."""
    value = value.detach().clone().reshape(1)
    world = _world_size()
    if world > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world
    return value[0]


def autocast(x: torch.Tensor, amp: torch.dtype | None):
    """Autocast to `amp` on x's device (a no-op context when amp is None)."""
    return torch.autocast(x.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def _float32(out: dict) -> dict:
    """The codec's outputs in float32 (after an autocast forward pass)."""
    return {**out, "x_hat": out["x_hat"].float(), "y_hat": out["y_hat"].float(),
            "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}


def generator_step(t: Trainables, x: torch.Tensor, loss_fn: CodecLoss, rate: RateController, *,
                   adversarial: bool, beta: float, clip_grad_norm: float,
                   amp: torch.dtype | None = None, k_fm: float = 0.0,
                   distill: Distiller | None = None) -> tuple[dict[str, float], dict]:
    with autocast(x, amp):
        if distill is not None:
            out, x_teacher = distill.forward(t.model, x)
        else:
            out = t.model(x)
    if amp is not None:
        out = _float32(out)
    terms = loss_fn(out, x)
    if "rate_weight" in out:  # a variable-rate model: each image at its own level and lambda
        lam = _f(out["rate_weight"].mean())
        rate_term = weighted_rate(out["likelihoods"], out["rate_weight"], x.shape[-2] * x.shape[-1])
    else:
        lam = rate.update(float(global_mean(terms["bpp"])))
        rate_term = lam * terms["bpp"]
    loss_rd = rate_term + terms["distortion"]
    loss_g = loss_rd
    stats: dict[str, float] = {}
    if distill is not None:
        distill_terms = distill.loss(out, x_teacher, loss_fn.k_m)
        loss_g = loss_g + distill_terms["distill"]
        stats.update({k: _f(v) for k, v in distill_terms.items()})
    if adversarial:
        y = out["y_hat"].detach()
        with frozen(t.discriminator) as d, autocast(x, amp):
            if k_fm > 0:  # x' and x in one pass: one spectral-norm estimate for both sides
                halves = [f.chunk(2) for f in d.features(torch.cat([out["x_hat"], x]), torch.cat([y, y]))]
                fake_feats, real_feats = [h[0] for h in halves], [h[1].detach() for h in halves]
                fake = fake_feats[-1]
            else:
                fake = d(out["x_hat"], y)
        adv = generator_adversarial_loss(fake.float())
        loss_g = loss_g + beta * adv
        stats["loss_adv"] = _f(adv)
        if k_fm > 0:
            fm = feature_matching_loss(fake_feats, real_feats)
            loss_g = loss_g + k_fm * fm
            stats["loss_fm"] = _f(fm)
    t.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(t.main_params, clip_grad_norm)
    t.opt_g.step()
    stats.update({
        "bpp": _f(terms["bpp"]), "mse": _f(terms["mse"]), "distortion": _f(terms["distortion"]),
        "rate_loss": _f(rate_term), "loss_rd": _f(loss_rd), "loss_g": _f(loss_g), "lambda": lam,
    })
    for extra in ("ms_ssim", "lpips", "fft"):
        if extra in terms:
            stats[extra] = _f(terms[extra])
    return stats, out


def discriminator_step(t: Trainables, x: torch.Tensor, out: dict, *, clip_grad_norm: float,
                       amp: torch.dtype | None = None) -> dict[str, float]:
    """One non-saturating D update on (x, y) vs (x', y), y = the quantized latent, detached."""
    x_hat = out["x_hat"].detach()
    y = out["y_hat"].detach()
    with autocast(x, amp):
        logits = t.disc(torch.cat([x, x_hat]), torch.cat([y, y])).float()
    real, fake = logits.chunk(2)
    loss_d = discriminator_loss(real, fake)
    t.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(t.discriminator.parameters(), clip_grad_norm)
    t.opt_d.step()
    t.sched_d.step()
    return {"loss_d": _f(loss_d), "d_real": _f(torch.sigmoid(real).mean()),
            "d_fake": _f(torch.sigmoid(fake).mean())}


def aux_step(t: Trainables) -> float:
    """The entropy bottleneck's aux loss on its own optimizer; gradients averaged over ranks (nothing to
    do when the entropy bottleneck is frozen: a generator-only distillation)."""
    if not t.aux_params:
        return 0.0
    aux = t.codec.aux_loss()
    t.opt_aux.zero_grad(set_to_none=True)
    aux.backward()
    world = _world_size()
    if world > 1:
        for p in t.aux_params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
    t.opt_aux.step()
    return _f(aux)


def train_step(t: Trainables, x: torch.Tensor, step: int, cfg: TrainConfig, loss_fn: CodecLoss,
               rate: RateController, amp: torch.dtype | None = None,
               distill: Distiller | None = None) -> dict[str, float]:
    """Global step `step` (0-based): phase 1 below cfg.rd_steps, adversarial from there on (D alone
    over the phase's first cfg.disc_warmup_steps); with `distill`, against a teacher (train.distill)."""
    phase = cfg.phase(step)
    stats, out = generator_step(t, x, loss_fn, rate, adversarial=phase == "gan", beta=cfg.beta,
                                clip_grad_norm=cfg.clip_grad_norm, amp=amp, k_fm=cfg.k_fm, distill=distill)
    if phase != "rd":
        stats.update(discriminator_step(t, x, out, clip_grad_norm=cfg.clip_grad_norm, amp=amp))
    stats["aux"] = aux_step(t)
    stats["lr"] = t.opt_g.param_groups[0]["lr"]
    t.sched_g.step()
    return stats
