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

from texpress.codec import bitstream
from texpress.codec.checkpoint import fingerprint as model_fingerprint
from texpress.codec.checkpoint import load_model
from texpress.codec.config import ModelConfig
from texpress.codec.imageio import ImageSource, LoadedImage, default_max_pixels, load_image
from texpress.codec.model import PAD_MULTIPLE, TexpressModel, pad_to_multiple, padding
from texpress.errors import BitstreamError, ModelMismatchError


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

    def __init__(self, model: TexpressModel, max_pixels: int | None = None):
        self.model = model.eval()
        self.fingerprint = model_fingerprint(model)
        self.max_pixels = default_max_pixels() if max_pixels is None else max_pixels

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, max_pixels: int | None = None) -> "Codec":
        return cls(load_model(path), max_pixels=max_pixels)

    @property
    def device(self) -> torch.device:
        """Where the model lives (bulk workers move it to a GPU); inputs follow it."""
        return next(self.model.parameters()).device

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def load(self, source: ImageSource) -> LoadedImage:
        return load_image(source, max_pixels=self.max_pixels)

    @torch.inference_mode()
    def encode(self, image: LoadedImage) -> bytes:
        x = to_tensor(image.rgb).to(self.device)
        out = self.model.compress(x)
        z_h, z_w = out["shape"]
        header = bitstream.Header(
            fingerprint=self.fingerprint, width=image.width, height=image.height, mode=image.mode,
            pad_h=padding(image.height), pad_w=padding(image.width), z_h=z_h, z_w=z_w,
            y_bytes=0, z_bytes=0, alpha_bytes=0,
        )
        alpha = bitstream.encode_alpha(image.alpha) if image.alpha is not None else b""
        return bitstream.pack(header, out["strings"][0][0], out["strings"][1][0], alpha)

    def compress(self, source: ImageSource) -> bytes:
        """Any image source to .tpx bytes."""
        return self.encode(self.load(source))

    @torch.inference_mode()
    def decompress(self, data: bytes) -> Image.Image:
        """.tpx bytes to a PIL image in the original size and colour mode."""
        payload = bitstream.unpack(data)
        h = payload.header
        if h.fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"made by model {h.fingerprint}, but the given model is {self.fingerprint}"
            )
        if h.width * h.height > self.max_pixels:
            raise BitstreamError(f"image is {h.width}x{h.height}, above the pixel limit of {self.max_pixels:,}")
        padded_h, padded_w = h.height + h.pad_h, h.width + h.pad_w
        if (padded_h % PAD_MULTIPLE or padded_w % PAD_MULTIPLE
                or (h.z_h, h.z_w) != (padded_h // PAD_MULTIPLE, padded_w // PAD_MULTIPLE)):
            raise BitstreamError("corrupt .tpx header (inconsistent sizes)")
        alpha = None
        if h.alpha_bytes:
            alpha = np.frombuffer(bitstream.decode_alpha(payload.alpha, h.width, h.height), np.uint8)
            alpha = alpha.reshape(h.height, h.width)
        # CompressAI's rANS decoder reads the string without bounds checks: a crafted stream (valid
        # checksum, short or garbage strings) would make it read past the end and may crash the
        # process. Zero padding gives it at least one 32-bit word per symbol (it renormalises at
        # most once per symbol), so such a file decodes to garbage pixels instead; the header
        # already states the real lengths, so valid files are unaffected.
        n_z = self.config.hyper_channels * h.z_h * h.z_w
        n_y = self.config.latent_channels * (4 * h.z_h) * (4 * h.z_w)
        y_string = payload.y_string + bytes(4 * n_y + 64)
        z_string = payload.z_string + bytes(4 * n_z + 64)
        x_hat = self.model.decompress([[y_string], [z_string]], (h.z_h, h.z_w))["x_hat"]
        return restore_mode(to_uint8(x_hat, h.height, h.width), h.mode, alpha)

    @torch.inference_mode()
    def reconstruct(self, source: ImageSource) -> Image.Image:
        """The model's own reconstruction with hard-quantized latents, without entropy coding.

        decompress(compress(x)) equals this exactly; tests hold the codec to it."""
        image = self.load(source)
        x_hat = self.model(to_tensor(image.rgb))["x_hat"]
        return restore_mode(to_uint8(x_hat, image.height, image.width), image.mode, image.alpha)

    @torch.inference_mode()
    def estimate_bits(self, source: ImageSource) -> float:
        """Bits the model's likelihoods predict for y and z (the entropy coder should come within ~2%)."""
        image = self.load(source)
        likelihoods = self.model(to_tensor(image.rgb))["likelihoods"]
        return float(sum(-torch.log2(v).sum() for v in likelihoods.values()))


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    return 8.0 * num_bytes / float(width * height) if width * height else math.nan
