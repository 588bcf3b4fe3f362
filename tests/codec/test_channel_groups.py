"""ELIC's channel groups with the checkerboard (entropy: channel-groups): bit-exact coding tiled and
untiled, across thread counts, a warm start at the hyperprior's rate, variable rate, effort, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texpress.codec import bitstream, passes, refine, tiling
from texpress.codec.api import Codec
from texpress.codec.checkpoint import build_model, read_checkpoint, save_checkpoint, transplant
from texpress.codec.complexity import measure
from texpress.codec.config import MAX_CHANNEL_GROUPS, ModelConfig, get_preset
from texpress.codec.model import pad_to_multiple
from texpress.codec.shipped import by_name
from texpress.errors import ConfigError
from texpress.params import build_section

from .conftest import crop, pixels

RATES = (2.4, 0.6, 0.15)
GROUPS = (8, 8, 16, 32, 64)


def lite_q1():
    entry = by_name("lite-q1")
    if entry is None:
        pytest.skip("no shipped models in this checkout")
    return entry


def warm_model(rates: tuple[float, ...] = (), perturb: bool = True):
    """lite-q1's transforms under the channel-groups context; `perturb` moves the refinement off zero
    so that every group's passes really change the means and scales."""
    model = build_model(get_preset("lite").replace(entropy="channel-groups", rate_lambdas=rates), seed=0)
    transplant(model, read_checkpoint(lite_q1().path)["state_dict"])
    if perturb:
        torch.manual_seed(0)
        with torch.no_grad():
            for group in model.context.group:
                for p in group.refine[-1].parameters():
                    p.normal_(0.0, 0.02)
    return model.eval()


@pytest.fixture(scope="module", params=[(), RATES], ids=["single-rate", "variable-rate"])
def coder(request) -> Codec:
    model = warm_model(request.param)
    model.update(force=True)
    return Codec(model)


def test_the_default_groups_are_elic_like():
    cfg = get_preset("lite").replace(entropy="channel-groups")
    assert cfg.groups == GROUPS and passes.passes(build_model(cfg)) == 2 * len(GROUPS)
    assert get_preset("lite").groups == (128,)


def test_round_trip_is_bit_exact_untiled(coder, photos):
    image = crop(photos[0], 200, 136)
    for quality in ([None] if not coder.config.variable_rate else [0.0, 62.5, 100.0]):
        data = coder.compress(image, quality=quality)
        header = bitstream.read_header(data)
        assert (header.version, header.passes, header.quality, header.effort) == (4, 10, quality, 0)
        assert np.array_equal(pixels(coder.decompress(data)), pixels(coder.reconstruct(image, quality=quality)))


def test_tiled_round_trip_is_bit_exact_and_keeps_each_context_inside_its_tile(coder, photos):
    """The decoder's latents of a 12-tile file are exactly what the encoder coded, tile by tile, each
    tile's groups and checkerboard reading that tile alone."""
    model = coder.model
    loaded = coder.load(crop(photos[1], 256, 192))
    quality = 50.0 if coder.config.variable_rate else None
    data = coder.encode(loaded, tile=64, quality=quality)
    assert bitstream.read_header(data).tiles == 12
    grid = tiling.Grid.for_image(loaded.height, loaded.width, 64)
    with torch.inference_mode():
        y = tiling.encode_latent(model.encoder, loaded.rgb, grid, coder.config.latent_channels, coder.device)
        z = tiling.hyper_latent(model.h_a, y, grid)
        z_hat = torch.round(z - coder._z_medians()) + coder._z_medians()
        g = model.gain(model.rate_position(quality))
        expected = torch.empty_like(y)
        for t in grid.tiles():
            y_g = y[tiling.y_slice(t)] * (1.0 if g is None else g.float())
            side = tiling.tile_params(model.side_params, z_hat, t)
            expected[tiling.y_slice(t)] = passes.code_tile(
                model, side, g, lambda s, m, mask, ch, y_g=y_g: torch.round(y_g[:, ch] - m))
    decoded = coder.open(data).latent()
    assert torch.equal(decoded, expected)
    whole = coder.open(coder.encode(loaded, quality=quality)).latent()
    assert not torch.equal(decoded, whole)  # the tiles' contexts really stop at their edges


def test_one_and_two_threads_code_and_decode_the_same(coder, photos):
    """Streams and decoded latents are identical with 1 and 2 threads (the float64 contexts on the
    2^-10 grid); the pixels too, up to the float32 generator's last bit (docs/format.md: with lite-q1's
    trained generator a pixel can move by one level with the thread count, the same without a context)."""
    image = crop(photos[4], 192, 128)
    quality = 75.0 if coder.config.variable_rate else None
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            data = coder.compress(image, quality=quality)
            runs.append((data, coder.open(data).latent(), pixels(coder.decompress(data)).astype(int)))
    finally:
        torch.set_num_threads(threads)
    (data1, lat1, px1), (data2, lat2, px2) = runs
    assert data1 == data2 and torch.equal(lat1, lat2)
    assert np.abs(px1 - px2).max() <= 1


def test_a_warm_start_codes_at_the_hyperprior_rate(photos, tmp_path):
    """`models init --from lite-q1 --entropy channel-groups`: the refinements start at zero, so the
    model's likelihoods, latents and pixels are lite-q1's; the file only adds the passes' framing."""
    from typer.testing import CliRunner

    from texpress.cli import build_app

    lite_q1()
    out = tmp_path / "cg.ckpt"
    result = CliRunner().invoke(build_app(), ["models", "init", "--preset", "lite", "--from", "lite-q1",
                                              "--entropy", "channel-groups", "-o", str(out)])
    assert result.exit_code == 0, result.output
    cg, hyper = Codec.from_checkpoint(out), Codec.from_checkpoint(lite_q1().path)
    assert cg.config.entropy == "channel-groups" and cg.fingerprint != hyper.fingerprint
    image = crop(photos[2], 256, 192)
    x = pad_to_multiple(torch.from_numpy(pixels(image).copy()).permute(2, 0, 1)[None].float() / 255)
    with torch.inference_mode():
        a, b = cg.model(x), hyper.model(x)
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"]) and torch.equal(a["y_hat"], b["y_hat"])
    assert cg.estimate_bits(image) == hyper.estimate_bits(image)
    data_cg, data_h = cg.compress(image), hyper.compress(image)
    assert np.array_equal(pixels(cg.decompress(data_cg)), pixels(hyper.decompress(data_h)))
    h_cg, h_h = bitstream.read_header(data_cg), bitstream.read_header(data_h)
    assert h_cg.z_bytes == h_h.z_bytes
    # the same symbols under the same tables; each extra pass ends its own rANS string (a few bytes)
    assert abs(h_cg.y_bytes - h_h.y_bytes) <= 8 * (h_cg.passes - 1)
    with torch.no_grad():  # training mode too: the rate the warm start begins training at
        cg.model.train(), hyper.model.train()
        torch.manual_seed(1)
        la = cg.model(x)["likelihoods"]["y"]
        torch.manual_seed(1)
        lb = hyper.model(x)["likelihoods"]["y"]
        cg.model.eval(), hyper.model.eval()
    assert torch.equal(la, lb)


def test_variable_rate_bpp_rises_with_quality(photos):
    model = warm_model(RATES)
    model.update(force=True)
    coder = Codec(model)
    image = crop(photos[2], 256, 256)
    sizes = [len(coder.compress(image, quality=q)) for q in (0, 50, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] * 0.7, sizes


def test_effort_refines_channel_groups_through_the_same_passes(photos):
    """Effort's loss charges the groups' passes as the coder does: at the encoder's latents its hard
    rate is the model's own estimate (unsnapped parameters aside), and the refined file costs less."""
    model = warm_model()
    model.update(force=True)
    coder = Codec(model)
    lam = lite_q1().info["lambda"]
    rgb = np.ascontiguousarray(pixels(crop(photos[0], 192, 128)))
    loaded = coder.load(rgb)
    grid = tiling.Grid.for_image(loaded.height, loaded.width, None)
    with torch.inference_mode():
        y = tiling.encode_latent(model.encoder, rgb, grid, coder.config.latent_channels, coder.device)
        z = tiling.hyper_latent(model.h_a, y, grid)
    piece = refine.pieces(tuple(y.shape[-2:]), tiling.generator_halo(model.config), grid)[0]
    gen = torch.Generator().manual_seed(0)
    target = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    rate_only = refine.Objective(lam=1.0, rate_only=True)
    pixels_n = rgb.shape[0] * rgb.shape[1]
    with torch.no_grad():
        bits = float(refine.piece_loss(model, piece, y.clone(), z.clone(), y.clone(), z.clone(), None,
                                       refine._Quantiser("hard", gen), target, rate_only)) * pixels_n
    assert bits == pytest.approx(coder.estimate_bits(rgb), rel=2e-3)
    plain, refined = coder.compress(rgb), coder.compress(rgb, effort=2, lam=lam)
    assert bitstream.read_header(refined).effort == 2 and bitstream.read_header(refined).passes == 10

    def loss(data: bytes) -> float:
        rec = pixels(coder.decompress(data)).astype(np.float64)
        return lam * 8.0 * len(data) / pixels_n + refine.HIFIC_K_M * float(np.mean((rec - rgb) ** 2))

    assert loss(refined) < loss(plain)


def test_the_context_is_counted_and_stays_light():
    lite = measure(build_model(get_preset("lite")))
    cg = measure(build_model(get_preset("lite").replace(entropy="channel-groups")))
    cb = measure(build_model(get_preset("lite").replace(entropy="checkerboard")))
    assert 0 < cg.context_kmac_per_px < cb.context_kmac_per_px
    assert cg.decoder_kmac_per_px == pytest.approx(lite.decoder_kmac_per_px + cg.context_kmac_per_px)


@pytest.mark.parametrize("values, fragment", [
    ({"entropy": "channel-groups", "channel_groups": [8, 8, 16]}, "must sum to latent_channels (128), got 8+8+16 = 32"),
    ({"entropy": "channel-groups", "channel_groups": [0, 64, 64]}, "groups of >= 1 channel"),
    ({"entropy": "channel-groups", "channel_groups": [8] * (MAX_CHANNEL_GROUPS + 1)},
     f"1 to {MAX_CHANNEL_GROUPS} groups"),
    ({"entropy": "checkerboard", "channel_groups": [64, 64]}, "channel_groups needs entropy: channel-groups"),
    ({"entropy": "channel-groups", "channel_groups": "abc"}, "model config"),
])
def test_config_validation_gives_one_line_errors(values, fragment):
    base = get_preset("lite").to_dict()
    with pytest.raises(ConfigError) as info:
        build_section(ModelConfig, {**base, **values}, "model config")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_custom_groups_round_trip_through_the_config_and_the_bitstream(photos):
    cfg = get_preset("lite").replace(entropy="channel-groups", channel_groups=(32, 96))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.groups == (32, 96)
    model = build_model(cfg, seed=0).eval()
    model.update(force=True)
    coder = Codec(model)
    image = crop(photos[3], 128, 128)
    data = coder.compress(image)
    assert bitstream.read_header(data).passes == 4
    assert np.array_equal(pixels(coder.decompress(data)), pixels(coder.reconstruct(image)))
