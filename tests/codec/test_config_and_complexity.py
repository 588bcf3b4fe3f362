import pytest
from compressai.models import ScaleHyperprior
import torch

from texpress.codec.complexity import count_macs, measure
from texpress.codec.config import PRESETS, ModelConfig, get_preset
from texpress.codec.model import TexpressModel
from texpress.errors import ConfigError


def test_hific_matches_the_paper_numbers():
    cx = measure(TexpressModel(get_preset("hific")))
    assert cx.generator_kmac_per_px == pytest.approx(664, rel=0.02)
    assert cx.generator_params / 1e6 == pytest.approx(157, rel=0.02)
    assert cx.residual_kmac_per_px / cx.generator_kmac_per_px == pytest.approx(0.88, abs=0.01)


def test_base_costs_about_as_much_as_bmshj2018_hyperprior_and_lite_far_less():
    ref = ScaleHyperprior(128, 192).eval()
    y = torch.zeros(1, 192, 16, 16)
    ref_kmac = (count_macs(ref.g_s, y) + count_macs(ref.h_s, torch.zeros(1, 128, 4, 4))) / 256**2 / 1e3
    base = measure(TexpressModel(get_preset("base")))
    lite = measure(TexpressModel(get_preset("lite")))
    assert 0.75 < base.decoder_kmac_per_px / ref_kmac < 1.5
    assert lite.decoder_kmac_per_px < base.decoder_kmac_per_px / 3


def test_any_width_list_builds_and_codes():
    pruned = get_preset("lite").replace(gen_widths=(40, 30, 20, 10, 3), res_blocks=1, enc_widths=(3, 16, 24, 32, 48))
    model = TexpressModel(pruned).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        out = model.compress(x)
        assert model.decompress(out["strings"], out["shape"])["x_hat"].shape == x.shape


def test_config_round_trips_through_plain_dicts():
    for cfg in PRESETS.values():
        d = cfg.to_dict()
        assert all(isinstance(v, (int, str, list)) for v in d.values())
        assert ModelConfig.from_dict(d) == cfg


@pytest.mark.parametrize("bad", [dict(upscale="bilinear"), dict(gen_widths=(1, 2, 3)), dict(res_blocks=-1),
                                 dict(latent_channels=0), dict(stem_kernel=4)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_unknown_preset_and_keys():
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"widths": [1]})


def test_subpixel_upscale_starts_checkerboard_free():
    """ICNR: the four sub-pixels of each PixelShuffle group start identical, so a constant input
    gives an output constant within each 2x2 group."""
    from texpress.codec.layers import SubpixelUp

    up = SubpixelUp(8, 4)
    out = up(torch.randn(1, 8, 5, 5))
    assert torch.allclose(out[..., 0::2, 0::2], out[..., 1::2, 1::2])
    assert torch.allclose(out[..., 0::2, 0::2], out[..., 0::2, 1::2])


def test_fast_build_indexes_matches_compressai():
    from compressai.entropy_models import GaussianConditional
    from compressai.models.base import get_scale_table

    from texpress.codec.model import SCALE_TABLE_LEVELS, FastGaussianConditional

    table = get_scale_table(levels=SCALE_TABLE_LEVELS)
    ref, fast = GaussianConditional(None), FastGaussianConditional(None)
    ref.update_scale_table(table, force=True)
    fast.update_scale_table(table, force=True)
    scales = torch.cat([torch.rand(20000) * 300, table, table * (1 + 1e-7), table * (1 - 1e-7),
                        torch.tensor([0.0, 0.05, 0.11, 256.0, 1e4])])
    assert torch.equal(ref.build_indexes(scales), fast.build_indexes(scales))


@pytest.mark.parametrize("bad", [dict(norm="batchnorm"), dict(stem_kernel=0), dict(out_kernel=0),
                                 dict(down_kernel=1), dict(upscale="deconv", up_kernel=1)])
def test_invalid_layer_choices_are_refused(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


@pytest.mark.parametrize("norm", ["channelnorm", "gdn"])
@pytest.mark.parametrize("upscale,k", [("deconv", 3), ("deconv", 4), ("deconv", 5), ("subpixel", 3), ("resize", 3)])
def test_every_layer_choice_keeps_the_geometry_and_codes(norm, upscale, k):
    """Stride-2 convs halve and upscales double exactly for odd and even kernels, with or without a
    stem and an output conv, so any combination codes and decodes to the input size."""
    cfg = ModelConfig(enc_widths=(3, 8, 8, 8, 12), latent_channels=8, gen_widths=(12, 8, 8, 8, 3), res_blocks=1,
                      hyper_channels=8, upscale=upscale, stem_kernel=0, out_kernel=0, norm=norm,
                      down_kernel=5, up_kernel=k)
    model = TexpressModel(cfg).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        assert model(x)["x_hat"].shape == x.shape
        out = model.compress(x)
        assert model.decompress(out["strings"], out["shape"])["x_hat"].shape == x.shape


def test_gdn_is_counted_as_a_1x1_conv():
    from compressai.layers import GDN

    assert count_macs(GDN(16), torch.zeros(1, 16, 8, 8)) == 16 * 16 * 8 * 8


def test_configs_saved_before_the_layer_choices_load_as_before():
    """Checkpoints written before norm/down_kernel/up_kernel existed hold configs without them; they
    must build the same modules (same state-dict keys and shapes) as the HiFiC defaults."""
    old = {k: v for k, v in get_preset("hific").to_dict().items() if k not in ("norm", "down_kernel", "up_kernel")}
    old.update(enc_widths=[16, 32, 64, 96, 128], latent_channels=96, gen_widths=[96, 64, 32, 24, 12],
               res_blocks=2, hyper_channels=64, upscale="subpixel", stem_kernel=3, out_kernel=3)
    cfg = ModelConfig.from_dict(old)
    assert (cfg.norm, cfg.down_kernel, cfg.up_kernel) == ("channelnorm", 3, 3)
    shapes = {k: tuple(v.shape) for k, v in TexpressModel(cfg).state_dict().items()}
    assert "generator.head.1.weight" in shapes and "encoder.net.0.weight" in shapes
    assert shapes["encoder.net.3.0.weight"] == (32, 16, 3, 3)


@pytest.mark.parametrize("changes,out_channels", [
    (dict(), 3), (dict(upscale="subpixel", up_kernel=3), 12), (dict(upscale="resize", up_kernel=3), 3),
    (dict(out_kernel=3, gen_widths=(96, 64, 48, 32, 16)), 3)])
def test_rgb_conv_is_the_layer_that_makes_rgb(changes, out_channels):
    """With or without an output conv, tests and tools can reach the last conv (sub-pixel: 4 x RGB)."""
    conv = TexpressModel(get_preset("lite").replace(**changes)).generator.rgb_conv
    channels = conv.out_channels
    assert channels == out_channels


def test_preset_name_recognises_an_architecture_whatever_its_training_quantization():
    from texpress.codec.config import preset_name

    assert preset_name(get_preset("base").replace(train_quant="noise")) == "base"
    assert preset_name(get_preset("lite")) == "lite"
    assert preset_name(get_preset("lite").replace(latent_channels=64)) == "custom"
