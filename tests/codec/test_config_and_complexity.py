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
    pruned = get_preset("lite").replace(gen_widths=(40, 30, 20, 10, 5), res_blocks=1, enc_widths=(8, 16, 24, 32, 48))
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
