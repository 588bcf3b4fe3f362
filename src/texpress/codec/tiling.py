"""Tiled coding of large images in bounded memory (docs/format.md, "Tiles").

The latents of a tiled image are those of the whole image: every fully convolutional stage (the
encoder, the hyper-synthesis, the generator) runs tile by tile on a crop that reaches beyond the
tile by a halo at least as wide as the stage's receptive field, and only the tile's own part of the
output is kept. So tiles need neither blending nor extra bits, and there are no seams: a tiled
result differs from an untiled one only by float rounding. Tiles are also the units of the y
strings, so the decoder makes one tile's latents, and then one band of pixel rows, at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from texpress.codec.config import ModelConfig
from texpress.codec.model import DOWNSCALE, PAD_MULTIPLE

TILE = 1024  # pixels per tile side when an image is tiled
SINGLE_PIECE_MAX_PIXELS = 2048 * 2048  # padded images up to this size are coded in one piece
ENCODER_HALO = 64  # pixels; the encoders' receptive fields reach 32-34 px (a multiple of 16 keeps the grid)
HYPER_ANALYSIS_HALO = 16  # y pixels (a multiple of 4 keeps the z grid); the hyper-analysis reaches 7
HYPER_HALO = 4  # z pixels; the hyper-synthesis reaches about 2.5


def generator_halo(cfg: ModelConfig) -> int:
    """y pixels of context the generator needs: its 3x3 head, two 3x3 convs per residual block and
    about two y pixels for the upscales and the output conv, plus a margin of two."""
    return 1 + 2 * cfg.res_blocks + 2 + 2


@dataclass(frozen=True)
class Grid:
    """The tile grid over the padded image, in pixels; tile 0 means one piece."""

    height: int
    width: int
    tile: int

    @classmethod
    def for_image(cls, height: int, width: int, tile: int | None = None) -> "Grid":
        """The grid the encoder uses: one piece up to SINGLE_PIECE_MAX_PIXELS, else TILE-sized tiles."""
        hp, wp = _padded(height), _padded(width)
        if tile is None:
            tile = 0 if hp * wp <= SINGLE_PIECE_MAX_PIXELS else TILE
        return cls(hp, wp, tile)

    @property
    def step(self) -> int:
        return self.tile or max(self.height, self.width)

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.height / self.step), math.ceil(self.width / self.step)

    @property
    def count(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def tiles(self) -> Iterator[tuple[int, int, int, int]]:
        """(top, bottom, left, right) of each tile in pixels, row by row."""
        s = self.step
        for top in range(0, self.height, s):
            for left in range(0, self.width, s):
                yield top, min(top + s, self.height), left, min(left + s, self.width)

    def rows(self) -> Iterator[list[tuple[int, int, int, int]]]:
        tiles = list(self.tiles())
        cols = self.shape[1]
        for i in range(0, len(tiles), cols):
            yield tiles[i: i + cols]


def _padded(size: int) -> int:
    return size + (-size) % PAD_MULTIPLE


def image_crop(rgb: np.ndarray, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pixels [top, bottom) x [left, right) of the image edge-replicated to the padded size, as a
    1x3xHxW float tensor in [0, 1] (the same values the untiled coder pads with)."""
    h, w = rgb.shape[:2]
    rows = np.clip(np.arange(top, bottom), 0, h - 1)
    cols = np.clip(np.arange(left, right), 0, w - 1)
    crop = rgb[rows[:, None], cols[None, :]]
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div_(255.0)


def halo_window(lo: int, hi: int, halo: int, size: int) -> tuple[int, int]:
    return max(0, lo - halo), min(size, hi + halo)


def encode_latent(encoder: Callable, rgb: np.ndarray, grid: Grid, channels: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """y of the whole padded image, computed tile by tile with a halo."""
    y = torch.empty(1, channels, grid.height // DOWNSCALE, grid.width // DOWNSCALE, device=device)
    d = DOWNSCALE
    for top, bottom, left, right in grid.tiles():
        t0, t1 = halo_window(top, bottom, ENCODER_HALO, grid.height)
        l0, l1 = halo_window(left, right, ENCODER_HALO, grid.width)
        out = encoder(image_crop(rgb, t0, t1, l0, l1).to(device))
        y[:, :, top // d: bottom // d, left // d: right // d] = \
            out[:, :, (top - t0) // d: (bottom - t0) // d, (left - l0) // d: (right - l0) // d]
    return y


def hyper_latent(h_a: Callable, y: torch.Tensor, grid: Grid) -> torch.Tensor:
    """z = h_a(y) of the whole image, computed tile by tile with a halo (in y pixels)."""
    r = PAD_MULTIPLE // DOWNSCALE
    yh, yw = y.shape[-2:]
    z = None
    for tile in grid.tiles():
        top, bottom, left, right = (v // DOWNSCALE for v in tile)
        t0, t1 = halo_window(top, bottom, HYPER_ANALYSIS_HALO, yh)
        l0, l1 = halo_window(left, right, HYPER_ANALYSIS_HALO, yw)
        out = h_a(y[:, :, t0:t1, l0:l1])
        if z is None:
            z = torch.empty(1, out.shape[1], yh // r, yw // r, device=y.device)
        z[:, :, top // r: bottom // r, left // r: right // r] = \
            out[:, :, (top - t0) // r: (bottom - t0) // r, (left - l0) // r: (right - l0) // r]
    return z


def tile_params(side_params: Callable, z_hat: torch.Tensor, tile: tuple[int, int, int, int]) -> torch.Tensor:
    """The hyperprior's parameters of y over one tile, from z_hat around it (encoder and decoder alike)."""
    top, bottom, left, right = (v // PAD_MULTIPLE for v in tile)
    zh, zw = z_hat.shape[-2:]
    t0, t1 = halo_window(top, bottom, HYPER_HALO, zh)
    l0, l1 = halo_window(left, right, HYPER_HALO, zw)
    params = side_params(z_hat[:, :, t0:t1, l0:l1])
    r = PAD_MULTIPLE // DOWNSCALE
    return params[:, :, (top - t0) * r: (bottom - t0) * r, (left - l0) * r: (right - l0) * r]


def y_slice(tile: tuple[int, int, int, int]) -> tuple[slice, ...]:
    top, bottom, left, right = (v // DOWNSCALE for v in tile)
    return slice(None), slice(None), slice(top, bottom), slice(left, right)


def generate_bands(generator: Callable, y_hat: torch.Tensor, grid: Grid, halo: int,
                   height: int, width: int) -> Iterator[np.ndarray]:
    """Pixel rows of the decoded image, one band of tiles at a time, as uint8 HxWx3 arrays."""
    yh, yw = y_hat.shape[-2:]
    d = DOWNSCALE
    for row in grid.rows():
        top, bottom = row[0][0], min(row[0][1], height)
        if top >= height:
            break
        band = np.empty((bottom - top, width, 3), np.uint8)
        for t, b, left, right in row:
            if left >= width:
                continue
            t0, t1 = halo_window(t // d, b // d, halo, yh)
            l0, l1 = halo_window(left // d, right // d, halo, yw)
            with torch.inference_mode():
                x = generator(y_hat[:, :, t0:t1, l0:l1]).clamp_(0, 1)
                r0, c0 = t - t0 * d, left - l0 * d
                x = x[0, :, r0: r0 + bottom - top, c0: c0 + min(right, width) - left]
                band[:, left: min(right, width)] = x.mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        yield band
