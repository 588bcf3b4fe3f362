"""Fast tests of the pieces of training: losses, rate control, config, schedules, one process steps."""

from __future__ import annotations

import copy

import math

import pytest
import torch

from texpress.codec.checkpoint import build_model, save_checkpoint
from texpress.codec.config import get_preset
from texpress.codec.discriminator import ConditionalDiscriminator
from texpress.errors import ConfigError
from texpress.train.config import HIFIC_K_M, TrainConfig
from texpress.train.losses import (CodecLoss, bits_per_pixel, discriminator_loss, generator_adversarial_loss,
                                   load_lpips, ms_ssim_any, mse_255)
from texpress.train.rate_control import RateController
from texpress.train.train_step import build_trainables, phase_lr_factor, split_parameters, train_step

# ---------------------------------------------------------------- losses

def test_bits_per_pixel_counts_y_and_z():
    lk = {"y": torch.full((1, 4, 2, 2), 0.5), "z": torch.full((1, 2, 1, 1), 0.25)}
    # y: 16 symbols x 1 bit, z: 2 symbols x 2 bits = 20 bits over 8x8 pixels
    assert float(bits_per_pixel(lk, 64)) == pytest.approx(20 / 64)


def test_mse_is_on_the_255_scale():
    x = torch.zeros(1, 3, 4, 4)
    assert float(mse_255(x + 1 / 255, x)) == pytest.approx(1.0, rel=1e-5)
    assert HIFIC_K_M == pytest.approx(0.075 / 32)


def test_adversarial_losses_are_the_non_saturating_logs():
    zero = torch.zeros(2, 1, 4, 4)
    # D = sigmoid(0) = 1/2: -log D(x') = log 2; -log D(x) - log(1 - D(x')) = 2 log 2
    assert float(generator_adversarial_loss(zero)) == pytest.approx(math.log(2))
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    confident = torch.full((2, 1, 4, 4), 20.0)
    assert float(discriminator_loss(confident, -confident)) < 1e-6  # D right on both: no loss
    assert float(generator_adversarial_loss(-confident)) == pytest.approx(20.0, rel=1e-3)  # G fooled nobody


@pytest.mark.parametrize("side", [64, 96, 128, 192])
def test_ms_ssim_any_size(side):
    torch.manual_seed(0)
    x = torch.rand(2, 3, side, side)
    assert float(ms_ssim_any(x, x)) == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert 0.0 < float(ms_ssim_any(noisy, x)) < 0.99


def test_codec_loss_terms():
    model = build_model(get_preset("lite"), seed=0)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    plain = CodecLoss(k_m=HIFIC_K_M)(out, x)
    assert set(plain) == {"bpp", "mse", "distortion"}
    assert float(plain["distortion"]) == pytest.approx(HIFIC_K_M * float(plain["mse"]), rel=1e-5)
    with_ms = CodecLoss(k_m=HIFIC_K_M, k_ms_ssim=1.0)(out, x)
    assert float(with_ms["distortion"]) == pytest.approx(
        float(plain["distortion"]) + 1.0 - float(with_ms["ms_ssim"]), rel=1e-4)


def _no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_lpips_from_local_backbone_weights(tmp_path, monkeypatch):
    import torchvision

    _no_downloads(monkeypatch)
    torch.manual_seed(0)
    backbone = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(backbone.state_dict(), path)
    lp = load_lpips(path, "alex")
    assert torch.equal(lp.net.slice1[0].weight, backbone.features[0].weight)
    assert torch.equal(getattr(lp.net.slice5, "10").weight, backbone.features[10].weight)
    assert not any(p.requires_grad for p in lp.parameters())
    x = torch.rand(1, 3, 64, 64)
    model = build_model(get_preset("lite"), seed=0)
    out = model(x)
    terms = CodecLoss(k_m=HIFIC_K_M, k_p=1.0, lpips_model=lp)(out, x)
    assert float(terms["lpips"]) > 0
    assert float(terms["distortion"]) == pytest.approx(HIFIC_K_M * float(terms["mse"]) + float(terms["lpips"]), rel=1e-4)
    # gradients reach the codec through LPIPS
    terms["distortion"].backward()
    assert model.generator.rgb_conv.weight.grad is not None


def test_lpips_full_state_dict_and_bad_files(tmp_path, monkeypatch):
    import lpips

    _no_downloads(monkeypatch)
    full = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    torch.nn.init.constant_(full.lin0.model[1].weight, 0.5)
    path = tmp_path / "lpips.pth"
    torch.save(full.state_dict(), path)
    lp = load_lpips(path, "alex")
    assert torch.equal(lp.lin0.model[1].weight, full.lin0.model[1].weight)
    with pytest.raises(ConfigError, match="no such file"):
        load_lpips(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        load_lpips(junk)
    other = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(1)}, other)
    with pytest.raises(ConfigError, match="no weights for"):
        load_lpips(other)


# ---------------------------------------------------------------- rate control

def test_rate_control_switches_at_the_target():
    rc = RateController(target_bpp=0.3, lambda_a=2.0, lambda_b=0.0625)
    assert rc.update(0.5) == 2.0
    assert rc.update(0.2) == 0.0625
    assert rc.update(0.3) == 0.0625  # at the target counts as below
    assert (rc.steps_above, rc.steps_below) == (1, 2)
    state = rc.state_dict()
    other = RateController(target_bpp=0.3, lambda_a=2.0, lambda_b=0.0625)
    other.load_state_dict(state)
    assert other.state_dict() == state


def test_rate_control_ema_smooths_single_batches():
    rc = RateController(target_bpp=0.3, lambda_a=2.0, lambda_b=0.0625, ema=0.9)
    assert rc.update(0.2) == 0.0625
    assert rc.update(1.0) == 0.0625  # one outlier batch: 0.9 * 0.2 + 0.1 * 1.0 = 0.28 < 0.3
    assert rc.smoothed_bpp == pytest.approx(0.28)
    assert rc.update(1.0) == 2.0  # 0.352


# ---------------------------------------------------------------- config

def test_config_from_dict_and_steps_split():
    cfg = TrainConfig.from_dict({"rd_steps": 300, "gan_steps": 100})
    assert cfg.total_steps == 400
    split = cfg.with_total_steps(40)
    assert (split.rd_steps, split.gan_steps) == (30, 10)
    assert cfg.with_total_steps(1).total_steps == 1
    with pytest.raises(ConfigError, match="unknown train keys: lamda"):
        TrainConfig.from_dict({"lamda": 1})
    with pytest.raises(ConfigError, match="unknown preset"):
        TrainConfig(preset="huge")
    with pytest.raises(ConfigError, match="integer"):
        TrainConfig(rd_steps=1.5)
    with pytest.raises(ConfigError, match="at least 1"):
        TrainConfig(rd_steps=0, gan_steps=0)
    with pytest.raises(ConfigError, match="negative"):
        TrainConfig(beta=-1)
    assert TrainConfig(gpus_per_worker=0.5).use_gpu and not TrainConfig().use_gpu


def test_lr_decays_within_each_phase():
    f = lambda s: phase_lr_factor(s, start=100, length=50, decay=0.1, decay_at=0.8)  # noqa: E731
    assert [f(100), f(139), f(140), f(149)] == [1.0, 1.0, 0.1, 0.1]


def test_quantiles_go_to_the_aux_optimizer():
    model = build_model(get_preset("lite"), seed=0)
    main, aux = split_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in aux] == ["entropy_bottleneck.quantiles"]
    assert len(main) + len(aux) == len(list(model.parameters()))


# ---------------------------------------------------------------- steps (one process)

def test_steps_train_both_phases_and_reduce_the_loss():
    torch.manual_seed(0)
    cfg = TrainConfig(rd_steps=20, gan_steps=4, lr=3e-4, lr_decay_at=1.0)  # GDN diverges at 1e-3 from a cold start
    model = build_model(get_preset("lite"), seed=0)
    disc = ConditionalDiscriminator(model.config.latent_channels)
    t = build_trainables(model, disc, cfg)
    rate = RateController(cfg.target_bpp, cfg.lambda_a, cfg.lambda_b)
    loss = CodecLoss(cfg.k_m)
    x = torch.rand(2, 3, 64, 64)
    d_before = [p.detach().clone() for p in disc.parameters()]
    q_before = model.entropy_bottleneck.quantiles.detach().clone()
    history = [train_step(t, x, s, cfg, loss, rate) for s in range(cfg.total_steps)]
    for stats in history:
        assert all(math.isfinite(v) for v in stats.values())
    assert "loss_d" not in history[cfg.rd_steps - 1]  # phase 1: no discriminator
    assert all(p.equal(b) for p, b in zip(disc.parameters(), d_before)) is False  # phase 2 trained D
    assert {"loss_d", "d_real", "d_fake", "loss_adv"} <= set(history[-1])
    assert history[-1]["loss_g"] > history[-1]["loss_rd"]  # + beta * (-log D(x', y))
    assert history[cfg.rd_steps - 1]["loss_rd"] < 0.5 * history[0]["loss_rd"]
    assert not torch.equal(model.entropy_bottleneck.quantiles, q_before)  # aux optimizer stepped


def test_disc_warmup_trains_d_while_the_codec_stays_on_the_rd_loss():
    cfg = TrainConfig(rd_steps=1, gan_steps=3, disc_warmup_steps=2, lr_decay_at=1.0)
    assert [cfg.phase(step) for step in range(4)] == ["rd", "D", "D", "gan"]
    model = build_model(get_preset("lite"), seed=0)
    disc = ConditionalDiscriminator(model.config.latent_channels)
    t = build_trainables(model, disc, cfg)
    rate = RateController(cfg.target_bpp, cfg.lambda_a, cfg.lambda_b)
    x = torch.rand(2, 3, 64, 64)
    history = [train_step(t, x, s, cfg, CodecLoss(cfg.k_m), rate) for s in range(cfg.total_steps)]
    assert "loss_d" not in history[0]
    for warm in history[1:3]:  # D learns; no adversarial term reaches the codec
        assert "loss_d" in warm and "loss_adv" not in warm and warm["loss_g"] == warm["loss_rd"]
    assert "loss_adv" in history[3] and history[3]["loss_g"] > history[3]["loss_rd"]


def test_disc_warmup_counts_within_the_adversarial_phase():
    with pytest.raises(ConfigError, match="disc_warmup_steps"):
        TrainConfig(rd_steps=10, gan_steps=5, disc_warmup_steps=6)
    from texpress.data.config import LoaderConfig
    from texpress.train.config import with_options

    cfg, _ = with_options(TrainConfig(), LoaderConfig(), steps=100, gan_steps=40, disc_warmup=30)
    assert (cfg.rd_steps, cfg.gan_steps, cfg.disc_warmup_steps) == (60, 40, 30)


def test_warm_start_payloads(tmp_path):
    from texpress.train.state import STATE_FORMAT, read_init

    model = build_model(get_preset("lite"), seed=3)
    save_checkpoint(model, tmp_path / "m.ckpt")
    payload = read_init(tmp_path / "m.ckpt")
    assert payload["model_config"] == get_preset("lite").to_dict()
    assert payload["disc"] is None
    fresh = build_model(get_preset("lite"), seed=0)
    fresh.load_state_dict(payload["model"])
    assert torch.equal(fresh.generator.rgb_conv.weight, model.generator.rgb_conv.weight)
    disc = ConditionalDiscriminator(96)
    state = {"format": STATE_FORMAT, "model_config": get_preset("lite").to_dict(), "model": model.state_dict(),
             "disc": disc.state_dict(), "step": 5}
    (tmp_path / "ray_ckpt").mkdir()
    torch.save(state, tmp_path / "ray_ckpt" / "train_state.pt")
    payload = read_init(tmp_path / "ray_ckpt")
    assert payload["disc"] is not None and payload["source"].endswith("ray_ckpt")
    from texpress.errors import CheckpointError

    with pytest.raises(CheckpointError):
        read_init(tmp_path / "nothing.ckpt")


def test_warm_up_and_a_fixed_lambda():
    from texpress.train.state import make_rate_controller
    from texpress.train.train_step import warmup_factor

    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    fixed = make_rate_controller(TrainConfig(fixed_lambda=0.2, target_bpp=0.3))
    assert [fixed.update(bpp) for bpp in (2.0, 0.1, 0.5)] == [0.2, 0.2, 0.2]
    control = make_rate_controller(TrainConfig(target_bpp=0.3))
    assert [control.update(bpp) for bpp in (2.0, 0.1)] == [2.0, 2.0**-4]
    with pytest.raises(ConfigError, match="fixed_lambda"):
        TrainConfig(fixed_lambda=0)


def test_bf16_autocast_steps_train_both_phases():
    from texpress.train.state import open_session

    cfg = TrainConfig(preset="lite", rd_steps=1, gan_steps=1)
    s = open_session(cfg, device=torch.device("cpu"), data_seed=0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    weights = lambda: torch.nn.utils.parameters_to_vector(s.t.codec.parameters()).detach().clone()  # noqa: E731
    before = weights()
    stats = [train_step(s.t, x, step, cfg, s.loss_fn, s.rate, amp=torch.bfloat16) for step in range(2)]
    assert all(math.isfinite(v) for st in stats for v in st.values())
    assert "loss_d" in stats[1] and next(s.t.codec.parameters()).dtype == torch.float32
    assert torch.isfinite(weights()).all() and not torch.equal(before, weights())


def test_a_variable_rate_checkerboard_model_trains_in_bf16():
    """Each image of the batch is coded at its own level with its own lambda; the rate gains and the
    context learn (bfloat16 autocast on the CPU)."""
    from texpress.train.losses import weighted_rate
    from texpress.train.state import open_session

    cfg = TrainConfig(preset="lite-vr", rd_steps=3, gan_steps=0, lr=3e-4)
    s = open_session(cfg, device=torch.device("cpu"), data_seed=0)
    model = s.t.codec
    gains, context = model.gains.log_gain.detach().clone(), model.context.refine[-1].weight.detach().clone()
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    stats = [train_step(s.t, x, step, cfg, s.loss_fn, s.rate, amp=torch.bfloat16) for step in range(3)]
    assert all(math.isfinite(v) for st in stats for v in st.values())
    assert not torch.equal(gains, model.gains.log_gain) and not torch.equal(context, model.context.refine[-1].weight)
    lk = {"y": torch.full((2, 1, 2, 2), 0.5)}
    assert weighted_rate(lk, torch.tensor([1.0, 3.0]), 4).item() == pytest.approx((1 * 4 + 3 * 4) / 2 / 4)


def test_cpu_precision_default_follows_the_cpus_bfloat16_instructions(monkeypatch):
    """No flag: bfloat16 autocast with channels_last on a CPU with bfloat16 instructions, float32
    elsewhere and on CUDA; --amp and --fp32 decide for themselves, and together they are refused."""
    from texpress.train import device as device_mod
    from texpress.train.options import OPTIONS, plan

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_mod, "native_bf16", lambda: True)
    assert device_mod.pick_precision(cpu, None) == device_mod.Precision(torch.bfloat16, True)
    assert device_mod.pick_precision(cpu, False) == device_mod.Precision(None, False)
    assert device_mod.pick_precision(cuda, None) == device_mod.Precision(None, False)
    assert device_mod.pick_precision(cuda, True) == device_mod.Precision(torch.bfloat16, False)
    monkeypatch.setattr(device_mod, "native_bf16", lambda: False)
    assert device_mod.pick_precision(cpu, None).name == "fp32"
    assert device_mod.pick_precision(cpu, True).name == "bf16-channels-last"

    values = {o.name: o.default for o in OPTIONS} | {"backend": "torch", "images": "x"}
    assert [plan(values | flags, local_params=False).amp for flags in ({}, {"amp": True}, {"fp32": True})] == [
        None, True, False]
    with pytest.raises(ConfigError, match="--amp and --fp32"):
        plan(values | {"amp": True, "fp32": True}, local_params=False)


def test_channels_last_bf16_steps_match_the_contiguous_ones_closely(tmp_path):
    """The CPU default's memory order changes how the convolutions run, not what the model learns: two
    steps from the same start land within bfloat16 noise of the contiguous run, and the channels_last
    model (1x1 context convs included) has the same fingerprint and checkpoint as its contiguous copy."""
    from texpress.codec.checkpoint import fingerprint
    from texpress.train.state import open_session

    cfg = TrainConfig(preset="lite-vr", rd_steps=2, gan_steps=0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    runs = []
    for channels_last in (False, True):
        s = open_session(cfg, device=torch.device("cpu"), data_seed=0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        s.t.codec.to(memory_format=fmt)
        torch.manual_seed(0)
        stats = [train_step(s.t, x.contiguous(memory_format=fmt), step, cfg, s.loss_fn, s.rate, amp=torch.bfloat16)
                 for step in range(2)]
        runs.append(stats[-1]["loss_rd"])
    assert runs[1] == pytest.approx(runs[0], rel=0.05)
    model = s.t.codec
    fp = fingerprint(model)
    assert fingerprint(copy.deepcopy(model).to(memory_format=torch.contiguous_format)) == fp
    assert save_checkpoint(model, tmp_path / "cl.ckpt", update=False) == fp
