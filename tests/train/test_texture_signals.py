"""The texture signals that need no downloaded weights (docs/texture.md): D's feature matching
(pix2pixHD) and the Fourier amplitude distortion term; their options in both trainers; the
adversarial phase with them runs on the sample photos and changes the generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from texpress.codec.checkpoint import build_model
from texpress.codec.config import get_preset
from texpress.codec.discriminator import ConditionalDiscriminator
from texpress.data.config import LoaderConfig
from texpress.errors import ConfigError
from texpress.train.config import TrainConfig, with_options
from texpress.train.losses import CodecLoss, feature_matching_loss, fourier_amplitude_loss
from texpress.train.rate_control import RateController
from texpress.train.train_step import build_trainables, generator_step, train_step


def test_d_features_end_with_its_logits():
    disc = ConditionalDiscriminator(8).eval()  # no power iteration: both calls see the same weights
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 8, 4, 4)
    feats = disc.features(x, y)
    assert len(feats) == 5 and [f.shape[1] for f in feats] == [64, 128, 256, 512, 1]
    assert torch.allclose(feats[-1], disc(x, y))


def test_feature_matching_is_zero_on_equal_features_and_trains_only_the_fake_side():
    real = [torch.rand(2, 4, 8, 8), torch.rand(2, 1, 4, 4)]
    assert float(feature_matching_loss([r.clone() for r in real], real)) == 0.0
    fake = [(r + 0.5).requires_grad_() for r in real]
    real = [r.requires_grad_() for r in real]
    loss = feature_matching_loss(fake, real)
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert all(f.grad is not None for f in fake) and all(r.grad is None for r in real)


def test_the_fourier_amplitude_term_ignores_phase_and_sees_blur_and_lattices():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    shifted = torch.roll(x, shifts=(5, 9), dims=(2, 3))  # same amplitudes, other phases
    assert float(fourier_amplitude_loss(shifted, x)) == pytest.approx(0.0, abs=1e-6)
    blur = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    lattice = x.clone()
    lattice[..., ::2, ::2] += 0.1  # a period-2 pattern on top of the image
    assert float(fourier_amplitude_loss(blur, x)) > 0.02
    assert float(fourier_amplitude_loss(lattice, x)) > 0.001
    terms = CodecLoss(1.0, k_fft=2.0)({"x_hat": blur, "likelihoods": {"y": torch.full((1, 1), 0.5)}}, x)
    assert float(terms["distortion"]) == pytest.approx(float(terms["mse"] + 2.0 * terms["fft"]), rel=1e-6)


def test_the_generator_loss_adds_beta_adv_and_k_fm_fm():
    model = build_model(get_preset("lite"), seed=0)
    disc = ConditionalDiscriminator(model.config.latent_channels)
    cfg = TrainConfig(rd_steps=0, gan_steps=1)
    t = build_trainables(model, disc, cfg)
    rate = RateController(cfg.target_bpp, 0.5, 0.5)
    stats, _ = generator_step(t, torch.rand(2, 3, 64, 64), CodecLoss(cfg.k_m), rate, adversarial=True, beta=0.2,
                              clip_grad_norm=0.0, k_fm=3.0)
    assert stats["loss_fm"] > 0
    assert stats["loss_g"] == pytest.approx(stats["loss_rd"] + 0.2 * stats["loss_adv"] + 3.0 * stats["loss_fm"],
                                            rel=1e-5)


def _sample_batch(n: int = 4, side: int = 128) -> torch.Tensor:
    from PIL import Image

    from texpress.samples import sample_photos

    photos = [p for p in sample_photos() if min(Image.open(p).size) >= side][:n]
    if len(photos) < n:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    crops = [np.asarray(Image.open(p).convert("RGB"))[:side, :side] for p in photos]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def test_the_adversarial_phase_with_the_texture_signals_changes_the_generator():
    x = _sample_batch()
    cfg = get_preset("lite").replace(top_upscale="subpixel", top_upscales=1, top_kernel=3)
    model = build_model(cfg, seed=0)
    disc = ConditionalDiscriminator(cfg.latent_channels)
    train = TrainConfig(rd_steps=1, gan_steps=4, disc_warmup_steps=1, lr_decay_at=1.0, k_fm=2.0, k_fft=4.0)
    t = build_trainables(model, disc, train)
    rate = RateController(train.target_bpp, 0.6, 0.6)
    loss = CodecLoss(train.k_m, k_fft=train.k_fft)
    history = []
    for step in range(train.total_steps):
        before = [p.detach().clone() for p in model.generator.parameters()]
        history.append(train_step(t, x, step, train, loss, rate))
        if train.phase(step) == "gan":
            assert any(not torch.equal(p, b) for p, b in zip(model.generator.parameters(), before))
    assert all(math.isfinite(v) for stats in history for v in stats.values())
    assert [("loss_fm" in s, "loss_d" in s) for s in history] == [(False, False), (False, True)] + [(True, True)] * 3
    assert all("fft" in s for s in history)


def test_the_options_reach_both_trainers_configs():
    from texpress.train.options import OPTIONS, argument_parser, plan

    flags = {o.flags[0] for o in OPTIONS}
    assert {"--beta", "--feature-matching", "--fourier", "--lr-disc"} <= flags
    args = ["-o", "out", "--images", "x", "--steps", "100", "--gan-steps", "60", "--disc-warmup", "20", "--beta", "0.3",
            "--feature-matching", "2", "--fourier", "4", "--lr-disc", "2e-4"]
    standalone = plan(vars(argument_parser("t", "t").parse_args(args)), local_params=False)
    values = {o.name: o.default for o in OPTIONS}
    values.update(out="out", shards="s", steps=100, gan_steps=60, disc_warmup=20, beta=0.3, k_fm=2.0, k_fft=4.0,
                  lr_disc=2e-4)
    ray = plan(values, local_params=False)  # the Ray backend gets the same TrainConfig (train.ray_driver)
    for p in (standalone, ray):
        c = p.cfg
        assert (c.beta, c.k_fm, c.k_fft, c.lr_disc) == (0.3, 2.0, 4.0, 2e-4)
        assert (c.rd_steps, c.gan_steps, c.disc_warmup_steps) == (40, 60, 20)
    assert ray.backend == "ray" and standalone.backend == "torch"
    with pytest.raises(ConfigError, match="k_fm"):
        with_options(TrainConfig(), LoaderConfig(), k_fm=-1.0)
