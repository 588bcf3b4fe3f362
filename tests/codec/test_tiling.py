"""Tiled coding of large images (codec.tiling): no seams, halos that cover every receptive field,
the tile grid in the header, PNG output streamed band by band."""

import numpy as np
import pytest
import torch
from PIL import Image

from texpress.codec import bitstream, tiling
from texpress.codec.checkpoint import build_model
from texpress.codec.config import get_preset
from texpress.codec.model import DOWNSCALE, PAD_MULTIPLE
from texpress.codec.png import write_png
from texpress.errors import BitstreamError

from .conftest import crop


def test_tiled_coding_has_no_seams(codec, photos):
    """A 3x2 grid of 128-px tiles decodes to the same pixels as one piece (up to float rounding)."""
    image = codec.load(Image.open(photos[0]).convert("RGB").resize((330, 250)))
    whole, tiled = codec.encode(image), codec.encode(image, tile=128)
    h = bitstream.read_header(tiled)
    assert (h.tile, h.tiles) == (128, 6)
    a = np.asarray(codec.decompress(whole)).astype(int)
    b = np.asarray(codec.decompress(tiled)).astype(int)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 1e-3


def test_grid_thresholds_and_tile_order():
    assert tiling.Grid.for_image(1500, 2000).tile == 0  # one piece up to 2048x2048 padded
    grid = tiling.Grid.for_image(3000, 2100)
    assert (grid.tile, grid.shape, grid.count) == (tiling.TILE, (3, 3), 9)
    tiles = list(grid.tiles())
    assert tiles[0] == (0, 1024, 0, 1024) and tiles[-1] == (2048, 3008, 2048, 2112)


def _radius(net, channels, size, scale):
    """Receptive radius of a fully convolutional net in input pixels, from the gradient of one
    output pixel at the centre."""
    x = torch.randn(1, channels, size, size, requires_grad=True)
    out = net(x)
    c = out.shape[-1] // 2
    out[0, :, c, c].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)) > 0).flatten()
    centre = (c + 0.5) / scale
    return max(centre - rows.min().item(), rows.max().item() + 1 - centre)


@pytest.mark.parametrize("preset", ["lite", "base"])
def test_halos_cover_every_receptive_field(preset):
    """If a new architecture reaches further, this fails before any tiled file shows a seam."""
    cfg = get_preset(preset)
    model = build_model(cfg, seed=0).eval()
    assert _radius(model.encoder, 3, 256, 1 / DOWNSCALE) <= tiling.ENCODER_HALO
    assert _radius(model.h_a, cfg.latent_channels, 64, 1 / 4) <= tiling.HYPER_ANALYSIS_HALO
    assert _radius(model.h_s, cfg.hyper_channels, 16, 4) <= tiling.HYPER_HALO
    halo = tiling.generator_halo(cfg)
    assert _radius(model.generator, cfg.latent_channels, 2 * halo + 8, DOWNSCALE) <= halo
    assert tiling.ENCODER_HALO % DOWNSCALE == 0 and tiling.HYPER_ANALYSIS_HALO % (PAD_MULTIPLE // DOWNSCALE) == 0


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_streamed_png_equals_the_decoded_image(codec, photos, tmp_path, mode):
    data = codec.compress(crop(photos[1], 97, 70, mode))
    path = tmp_path / "out.png"
    assert codec.decompress_to(data, path) == (97, 70)
    written = Image.open(path)
    expected = codec.decompress(data)
    assert written.mode == expected.mode == mode
    assert np.array_equal(np.asarray(written), np.asarray(expected))


def test_png_writer_checks_its_row_count(tmp_path):
    rows = [np.zeros((3, 4, 3), np.uint8)]
    with pytest.raises(ValueError, match="3 rows of 5"):
        write_png(tmp_path / "x.png", 4, 5, "RGB", rows)


def test_large_declared_sizes_are_refused_before_allocation(codec, photos):
    data = codec.compress(crop(photos[0], 64, 64))
    from .test_bitstream import forge

    with pytest.raises(BitstreamError, match="pixel limit"):
        codec.decompress(forge(forge(data, 24, 60_000), 28, 60_000))
    with pytest.raises(BitstreamError, match="one piece"):  # within the pixel limit, too large for one piece
        codec.decompress(forge(forge(data, 24, 4000), 28, 1100))
