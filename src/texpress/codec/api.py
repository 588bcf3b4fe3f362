"""The Python API: load a codec from a checkpoint, compress an image to .tpx bytes, restore it.

    codec = Codec.from_checkpoint("model.ckpt")
    data = codec.compress("photo.jpg")          # path, bytes, PIL image or uint8 array
    image = codec.decompress(data)              # PIL image, original size and mode

Images of any size are padded (edge replication) to a multiple of 64 and cropped back. Each image
is coded on its own, so the bytes and pixels never depend on what else is in a batch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from texpress.codec import bitstream, entropy, gain, passes, refine, shipped, tiling
from texpress.codec.checkpoint import fingerprint as model_fingerprint
from texpress.codec.checkpoint import load_model, read_checkpoint
from texpress.codec.config import ModelConfig
from texpress.codec.imageio import ImageSource, LoadedImage, default_max_pixels, load_image
from texpress.codec.model import PAD_MULTIPLE, TexpressModel, pad_to_multiple, padding
from texpress.codec.png import write_png
from texpress.codec.threads import coding_threads
from texpress.errors import BitstreamError, CheckpointError, ConfigError, ModelMismatchError


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 to a padded float 1x3xH'xW' tensor in [0, 1]."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div_(255.0)
    return pad_to_multiple(x)


def to_uint8(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255.0).round_().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().cpu().numpy()


def restore_mode(rgb: np.ndarray, mode: str, alpha: np.ndarray | None) -> Image.Image:
    image = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        image = image.convert("L")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    return image


class Codec:
    """A loaded model ready to code images; cheap to call repeatedly."""

    def __init__(self, model: TexpressModel, max_pixels: int | None = None, meta: dict | None = None):
        self.model = model.eval()
        self.fingerprint = model_fingerprint(model)
        self.max_pixels = default_max_pixels() if max_pixels is None else max_pixels
        self.meta = meta  # the checkpoint's meta (its training objective), read when first needed
        self.source: str | os.PathLike | None = None
        self._tables: tuple[entropy.Tables, entropy.Tables] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, max_pixels: int | None = None) -> "Codec":
        """A checkpoint file, or a shipped model's name (`lite-q1`); for a registry URI
        (`models:/NAME@ALIAS`) pass texpress.registry.refs.resolve_checkpoint(uri)."""
        text = os.fspath(path)
        if not os.path.exists(text) and "/" not in text and (entry := shipped.by_name(text)) is not None:
            path = entry.path
        codec = cls(load_model(path), max_pixels=max_pixels)
        codec.source = path
        return codec

    def objective(self, lam: float | None = None, quality: float | None = None) -> refine.Objective:
        """What encodes at effort > 0 minimise: the model's own rate-distortion trade-off, from its
        checkpoint or the shipped manifest (codec.refine.objective_for); a variable-rate model's
        lambda is that of the quality (default DEFAULT_QUALITY), log-interpolated between its trained
        levels like the gains (codec.gain). `lam` overrides lambda."""
        if lam is None and self.config.variable_rate:
            position = self.model.rate_position(self.check_quality(quality))
            lam = float(self.model.gains.rate_weight(position).detach()[0])
        if self.meta is None:
            self.meta = read_checkpoint(self.source)["meta"] if self.source is not None else {}
        try:
            entry = shipped.by_fingerprint(self.fingerprint).info
        except CheckpointError:
            entry = {}
        return refine.objective_for(self.meta, entry, lam)

    def teacher_fingerprint(self) -> str | None:
        """The model whose files this one decodes too: a slim variant's teacher when the variant kept its
        latent (checkpoint meta `slim.decode_compatible`, texpress.slim), else None."""
        if self.meta is None:
            self.meta = read_checkpoint(self.source)["meta"] if self.source is not None else {}
        slim = self.meta.get("slim") or {}
        return slim.get("teacher") if slim.get("decode_compatible") is True else None

    @property
    def device(self) -> torch.device:
        """Where the model lives (bulk workers move it to a GPU); inputs follow it."""
        return next(self.model.parameters()).device

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def load(self, source: ImageSource) -> LoadedImage:
        return load_image(source, max_pixels=self.max_pixels)

    @property
    def tables(self) -> tuple[entropy.Tables, entropy.Tables]:
        """The entropy coder's tables for z and y (built once)."""
        if self._tables is None:
            self._tables = (entropy.Tables.from_entropy_model(self.model.entropy_bottleneck),
                            entropy.Tables.from_entropy_model(self.model.gaussian_conditional))
        return self._tables

    def _z_medians(self) -> torch.Tensor:
        return self.model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)

    def check_quality(self, quality: float | None) -> float | None:
        """The quality this model codes at: None for a single-rate model (which refuses one), else the
        given quality (0-100) or DEFAULT_QUALITY."""
        if not self.config.variable_rate:
            if quality is not None:
                raise ConfigError(f"model {self.fingerprint[:12]} has a single rate; --quality needs a "
                                  "variable-rate model (texpress models list)")
            return None
        return gain.check_quality(gain.DEFAULT_QUALITY if quality is None else quality)

    def check_effort(self, effort) -> int:
        """An effort level (codec.refine): 0 to refine.TOP_EFFORT, for every model."""
        return refine.check_effort(effort)

    def encode(self, image: LoadedImage, tile: int | None = None, effort: int = 0, lam: float | None = None,
               on_step=None, quality: float | None = None) -> bytes:
        """A loaded image to .tpx bytes (format 4, which records the effort); large
        images are coded in tiles (codec.tiling). `quality` (0-100) is a variable-rate model's knob.

        effort > 0 refines the latents first (codec.refine): fewer bits for the same decoder, at the
        cost of encode time; `lam` overrides the model's rate weight, on_step() is called per step."""
        level = self.check_effort(effort)
        quality = self.check_quality(quality)
        if level == 0:
            with coding_threads():
                return self._encode(image, tile, quality)
        objective = self.objective(refine.check_lambda(lam), quality)
        with coding_threads():
            return self._encode(image, tile, quality, refine.levels_for(self.model)[level], objective, on_step)

    @torch.inference_mode()
    def _encode(self, image: LoadedImage, tile: int | None, quality: float | None,
                effort: refine.Effort | None = None, objective: refine.Objective | None = None, on_step=None) -> bytes:
        model, (z_tables, y_tables) = self.model, self.tables
        grid = tiling.Grid.for_image(image.height, image.width, tile)
        y = tiling.encode_latent(model.encoder, image.rgb, grid, self.config.latent_channels, self.device)
        z = tiling.hyper_latent(model.h_a, y, grid)
        g = model.gain(model.rate_position(quality))
        if effort is not None:
            y, z = refine.refine(model, image.rgb, y, z, effort, objective, on_step, grid, g)
        medians = self._z_medians()
        z_symbols = torch.round(z - medians).int()
        z_string, z_escapes = entropy.encode(z_symbols.cpu().numpy(), _z_indexes(z_symbols.shape), z_tables)
        z_hat = z_symbols.float() + medians
        y_strings, y_escapes = [], []

        def code_pass(y_tile: torch.Tensor):
            y_g = y_tile if g is None else y_tile * g.float()

            def encode_pass(scales: torch.Tensor, means: torch.Tensor, mask: torch.Tensor | None,
                            channels: slice) -> torch.Tensor:
                symbols = torch.round(y_g[:, channels] - means)
                indexes = model.gaussian_conditional.build_indexes(passes.select(scales, mask))
                string, escapes = entropy.encode(passes.select(symbols, mask).int().cpu().numpy(),
                                                 indexes.cpu().numpy(), y_tables)
                y_strings.append(string)
                y_escapes.append(escapes)
                return symbols
            return encode_pass

        for t in grid.tiles():
            side = tiling.tile_params(model.side_params, z_hat, t)
            passes.code_tile(model, side, g, code_pass(y[tiling.y_slice(t)]))
        header = bitstream.Header(
            fingerprint=self.fingerprint, width=image.width, height=image.height, mode=image.mode,
            pad_h=padding(image.height), pad_w=padding(image.width), z_h=z.shape[-2], z_w=z.shape[-1],
            y_bytes=0, z_bytes=0, alpha_bytes=0, tile=grid.tile, quality=quality,
            passes=passes.passes(model), effort=0 if effort is None else effort.level,
        )
        alpha = bitstream.encode_alpha(image.alpha) if image.alpha is not None else b""
        return bitstream.pack(header, y_strings, z_string, alpha, y_escapes, z_escapes)

    def compress(self, source: ImageSource, effort: int = 0, lam: float | None = None,
                 quality: float | None = None) -> bytes:
        """Any image source to .tpx bytes (effort, quality: see encode), checked before the image is read."""
        level = self.check_effort(effort)
        return self.encode(self.load(source), effort=level, lam=lam, quality=self.check_quality(quality))

    def open(self, data: bytes) -> "Decoding":
        """Check a .tpx file fully (checksum, model, sizes, tile grid) before anything is allocated."""
        payload = bitstream.unpack(data)
        h = payload.header
        if h.fingerprint != self.fingerprint and h.fingerprint != self.teacher_fingerprint():
            raise ModelMismatchError(
                f"made by model {h.fingerprint}, but the given model is {self.fingerprint}"
            )
        if h.passes != passes.passes(self.model) or (h.quality is None) == self.config.variable_rate:
            raise BitstreamError(f"corrupt .tpx header ({h.passes} coding passes, quality {h.quality})")
        if h.width * h.height > self.max_pixels:
            raise BitstreamError(f"image is {h.width}x{h.height}, above the pixel limit of {self.max_pixels:,}")
        padded_h, padded_w = h.height + h.pad_h, h.width + h.pad_w
        if (padded_h % PAD_MULTIPLE or padded_w % PAD_MULTIPLE
                or (h.z_h, h.z_w) != (padded_h // PAD_MULTIPLE, padded_w // PAD_MULTIPLE)):
            raise BitstreamError("corrupt .tpx header (inconsistent sizes)")
        if h.tile % PAD_MULTIPLE or h.tile * h.tile > tiling.SINGLE_PIECE_MAX_PIXELS:
            raise BitstreamError(f"corrupt .tpx header (tile size {h.tile})")
        grid = tiling.Grid(padded_h, padded_w, h.tile)
        if grid.count != h.tiles:
            raise BitstreamError(f"corrupt .tpx header ({h.tiles} tiles, the grid has {grid.count})")
        if h.version >= 2 and h.tile == 0 and padded_h * padded_w > tiling.SINGLE_PIECE_MAX_PIXELS:
            raise BitstreamError("corrupt .tpx header (a large image in one piece)")
        return Decoding(self, payload, grid)

    def decompress(self, data: bytes) -> Image.Image:
        """.tpx bytes to a PIL image in the original size and colour mode."""
        decoding = self.open(data)
        rgb = np.concatenate(list(decoding.bands()), axis=0)
        return restore_mode(rgb, decoding.header.mode, decoding.alpha())

    def decompress_to(self, data: bytes, path: str | os.PathLike) -> tuple[int, int]:
        """.tpx bytes to a PNG file, written band by band (memory stays bounded for huge images).
        Returns (width, height)."""
        decoding = self.open(data)
        decoding.write_png(path)
        return decoding.header.width, decoding.header.height

    @torch.inference_mode()
    def reconstruct(self, source: ImageSource, quality: float | None = None) -> Image.Image:
        """The model's own reconstruction with hard-quantized latents, without entropy coding.

        decompress(compress(x)) equals this exactly; tests hold the codec to it."""
        image = self.load(source)
        with coding_threads():
            x_hat = self.model(to_tensor(image.rgb), self.check_quality(quality))["x_hat"]
        return restore_mode(to_uint8(x_hat, image.height, image.width), image.mode, image.alpha)

    @torch.inference_mode()
    def estimate_bits(self, source: ImageSource, quality: float | None = None) -> float:
        """Bits the model's likelihoods predict for y and z (the entropy coder should come within ~2%)."""
        image = self.load(source)
        likelihoods = self.model(to_tensor(image.rgb), self.check_quality(quality))["likelihoods"]
        return float(sum(-torch.log2(v).sum() for v in likelihoods.values()))


def _z_indexes(shape: torch.Size) -> np.ndarray:
    """The factorized prior codes channel c of z with table c."""
    return np.broadcast_to(np.arange(shape[1], dtype=np.int64)[None, :, None, None], tuple(shape))


class Decoding:
    """An opened, validated .tpx file: its latents are decoded lazily, its pixels band by band."""

    def __init__(self, codec: Codec, payload: bitstream.Payload, grid: tiling.Grid):
        self.codec, self.payload, self.header, self.grid = codec, payload, payload.header, grid

    def alpha(self) -> np.ndarray | None:
        h = self.header
        if not h.alpha_bytes:
            return None
        raw = bitstream.decode_alpha(self.payload.alpha, h.width, h.height)
        return np.frombuffer(raw, np.uint8).reshape(h.height, h.width)

    @torch.inference_mode()
    def latent(self) -> torch.Tensor:
        """y_hat of the whole image (format 1: one string with CompressAI's escape coding)."""
        with coding_threads():
            return self._latent()

    def _latent(self) -> torch.Tensor:
        codec, p, h = self.codec, self.payload, self.header
        model, (z_tables, y_tables) = codec.model, codec.tables
        z_shape = (1, codec.config.hyper_channels, h.z_h, h.z_w)
        z_indexes = _z_indexes(z_shape)
        if h.version == 1:
            z_symbols = entropy.decode_v1(p.z_string, z_indexes, z_tables)
        else:
            z_symbols = entropy.decode(p.z_string, p.z_escapes, z_indexes, z_tables)
        z_hat = torch.from_numpy(z_symbols.reshape(z_shape)).float().to(codec.device) + codec._z_medians()
        y_hat = torch.empty(1, codec.config.latent_channels, h.z_h * 4, h.z_w * 4, device=codec.device)
        g = model.gain(model.rate_position(h.quality))
        segments = iter(range(len(p.y_strings)))

        def decode_pass(scales: torch.Tensor, means: torch.Tensor, mask: torch.Tensor | None,
                        channels: slice) -> torch.Tensor:
            i = next(segments)
            indexes = model.gaussian_conditional.build_indexes(passes.select(scales, mask)).cpu().numpy()
            if h.version == 1:
                symbols = entropy.decode_v1(p.y_strings[i], indexes, y_tables)
            else:
                symbols = entropy.decode(p.y_strings[i], p.y_escapes[i], indexes, y_tables)
            return passes.place(torch.from_numpy(symbols).to(means.device), means, mask)

        for t in self.grid.tiles():
            side = tiling.tile_params(model.side_params, z_hat, t)
            y_hat[tiling.y_slice(t)] = passes.code_tile(model, side, g, decode_pass)
        return y_hat

    def write_png(self, path: str | os.PathLike) -> None:
        h = self.header
        write_png(path, h.width, h.height, h.mode, self.bands(), self.alpha())

    def bands(self):
        """uint8 RGB rows of the image, top to bottom; the generator runs in tiles on large images."""
        h = self.header
        y_hat = self.latent()
        out_grid = tiling.Grid.for_image(h.height, h.width)
        halo = tiling.generator_halo(self.codec.config)

        def generate(y: torch.Tensor) -> torch.Tensor:
            with coding_threads():
                return self.codec.model.generator(y)

        yield from tiling.generate_bands(generate, y_hat, out_grid, halo, h.height, h.width)


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    return 8.0 * num_bytes / float(width * height) if width * height else math.nan
