import numpy as np
import pytest
import torch
from compressai.layers import GDN

from texpress.codec.api import Codec
from texpress.codec.checkpoint import build_model, load_model, save_checkpoint
from texpress.codec.complexity import measure
from texpress.codec.model import TexpressModel
from texpress.errors import ConfigError
from texpress.slim.prune import config_of, prune_model
from texpress.slim.pruners import GDNPruner
from texpress.slim.students import student_config, student_from_teacher
from texpress.train.distill import decode_compatible

from .conftest import TINY_HIFIC, TINY_VR


def test_gdn_pruner_keeps_the_kept_channels_function():
    torch.manual_seed(0)
    gdn = GDN(6, inverse=True)
    with torch.no_grad():
        gdn.gamma.add_(torch.rand(6, 6) * 0.1)
        gdn.beta.add_(torch.rand(6))
    x = torch.randn(1, 6, 5, 5)
    drop = [1, 4]
    keep = [0, 2, 3, 5]
    x[:, drop] = 0  # with the dropped channels silent, the kept ones see the same normalisation
    ref = gdn(x)[:, keep]
    GDNPruner().prune_out_channels(gdn, drop)
    assert gdn.beta.shape == (4,) and gdn.gamma.shape == (4, 4)
    torch.testing.assert_close(gdn(x[:, keep]), ref)


@pytest.mark.parametrize("cfg, ratio, widths", [
    (TINY_VR, 0.5, (8, 8, 6, 4, 3)),
    (TINY_HIFIC, 0.5, (8, 8, 6, 4, 4)),
    (TINY_VR, 0.25, (12, 12, 9, 6, 3)),
])
def test_generator_pruning_gives_the_requested_widths(cfg, ratio, widths):
    teacher = build_model(cfg, seed=0).eval()
    pruned = prune_model(teacher, ratio, "generator")
    assert pruned.config.gen_widths == widths
    assert pruned.config.enc_widths == cfg.enc_widths
    assert config_of(pruned.model) == pruned.config
    assert decode_compatible(pruned.model, teacher)
    assert teacher.config.gen_widths == cfg.gen_widths  # the teacher is left as it was


def test_encoder_pruning_keeps_the_latent_and_rgb():
    teacher = build_model(TINY_HIFIC, seed=0).eval()
    pruned = prune_model(teacher, 0.5, "all")
    assert pruned.config.enc_widths == (4, 8, 8, 8, 8)
    assert pruned.config.latent_channels == TINY_HIFIC.latent_channels
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert pruned.model(x)["x_hat"].shape == x.shape


def test_taylor_criterion_uses_the_loss():
    teacher = build_model(TINY_VR, seed=0).eval()
    images = torch.rand(2, 3, 64, 64)
    magnitude = prune_model(teacher, 0.5, "generator").model.state_dict()
    taylor = prune_model(teacher, 0.5, "generator", "taylor", images).model.state_dict()
    assert taylor["generator.ups.1.0.weight"].shape == magnitude["generator.ups.1.0.weight"].shape
    assert any(not torch.equal(taylor[k], magnitude[k]) for k in taylor if k.startswith("generator."))
    with pytest.raises(ConfigError):
        prune_model(teacher, 0.5, "generator", "taylor", None)


def test_pruned_model_saves_loads_and_codes(tmp_path):
    teacher = build_model(TINY_VR, seed=0).eval()
    model = prune_model(teacher, 0.5, "generator").model
    path = tmp_path / "pruned.ckpt"
    save_checkpoint(model, path)
    codec = Codec.from_checkpoint(path)
    assert codec.config.gen_widths == (8, 8, 6, 4, 3)
    rgb = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    data = codec.compress(rgb, quality=60)
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(codec.reconstruct(rgb, quality=60)))


def test_kmac_counts_match_the_configs():
    teacher = build_model(TINY_VR, seed=0).eval()
    model = prune_model(teacher, 0.5, "generator").model
    assert measure(model) == measure(TexpressModel(model.config))
    # by hand: head 3x3 16->8 at 1/256 of the pixels; deconvs 5x5 count input pixels x outputs x 25;
    # IGDN C^2 per output pixel
    w = model.config.gen_widths
    head = 16 * w[0] * 9 / 256
    ups = sum(w[i] * w[i + 1] * 25 / 4 ** (4 - i) for i in range(4))
    igdn = sum(w[i + 1] ** 2 / 4 ** (3 - i) for i in range(3))
    assert measure(model).generator_kmac_per_px == pytest.approx((head + ups + igdn) / 1e3)
    assert measure(model).decoder_kmac_per_px < measure(teacher).decoder_kmac_per_px


@pytest.mark.parametrize("ratio", [0, -0.2, 0.99, float("nan"), "x"])
def test_bad_ratio(ratio):
    with pytest.raises(ConfigError, match="ratio"):
        prune_model(build_model(TINY_VR, seed=0), ratio)


def test_smaller_kernels_start_from_the_centre(tmp_path):
    teacher = build_model(TINY_VR, seed=0).eval()
    student = student_from_teacher(teacher, student_config("up_kernel=3", teacher.config))
    assert student.config.up_kernel == 3
    torch.testing.assert_close(student.generator.ups[1][0].weight, teacher.generator.ups[1][0].weight[:, :, 1:4, 1:4])
    assert decode_compatible(student, teacher)
    assert not decode_compatible(build_model(TINY_VR, seed=1), teacher)


def test_two_layer_synthesis_student_codes_over_the_teachers_latent(tmp_path):
    teacher = build_model(TINY_VR, seed=0).eval()
    cfg = student_config("synthesis=two-layer,gen_widths=6/3/3/3/3,up_kernel=3", teacher.config)
    student = student_from_teacher(teacher, cfg)
    assert len(student.generator.ups) == 1 and decode_compatible(student, teacher)
    # two convs: 3x3 16 -> 6*16 at 1/256 of the pixels, 3x3 6 -> 48 at 1/16; IGDN 6^2 at 1/16
    expected = (16 * 96 * 9 / 256 + 6 * 48 * 9 / 16 + 36 / 16) / 1e3
    assert measure(student).generator_kmac_per_px == pytest.approx(expected)
    path = tmp_path / "two.ckpt"
    save_checkpoint(student, path)
    codec = Codec.from_checkpoint(path)
    rgb = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    data = codec.compress(rgb, quality=30)
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(codec.reconstruct(rgb, quality=30)))
    with pytest.raises(ConfigError, match="two-layer"):
        prune_model(student, 0.5)
    with pytest.raises(ConfigError, match="two-layer"):
        TINY_VR.replace(synthesis="two-layer", out_kernel=7)
