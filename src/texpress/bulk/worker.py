"""The Ray Data actor class: one loaded codec per actor, reused for every batch it gets.

`map_batches(CodecWorker, compute=ActorPoolStrategy(size=workers))` creates the pool. The
checkpoint travels as bytes through Ray's object store, so workers on other machines need no
shared disk. An actor writes each output itself (whole, see store.py) and returns only its
record; for shard destinations it returns the .tpx bytes and the driver assembles the shards.
A bad input becomes a failed row with a reason; nothing a single input does stops the batch.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

from texpress.bulk.config import FILES, BulkConfig
from texpress.bulk.sources import COMPRESS, TODO
from texpress.bulk.store import Store
from texpress.codec.api import Codec
from texpress.codec.checkpoint import read_checkpoint
from texpress.codec.imageio import IMAGE_SUFFIXES
from texpress.data.validate import classify
from texpress.errors import BitstreamError, ModelMismatchError, TexpressError


def compressed_key(key: str) -> str:
    return f"{key}.tpx"


def restored_key(key: str) -> str:
    """sub/a.jpg.tpx (or sub/a.jpg) -> sub/a.png: the original name, as PNG."""
    base = key[:-4] if key.endswith(".tpx") else key
    head, _, name = base.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES:
        name = stem
    return f"{head}/{name}.png" if head else f"{name}.png"


def load_codec(checkpoint: bytes, suffix: str, max_pixels: int, device: str = "cpu"):
    """A Codec from checkpoint bytes (written to a private temporary file just long enough to load)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation noise from compressai

    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(checkpoint)
        codec = Codec.from_checkpoint(path, max_pixels=max_pixels)
        codec.meta = read_checkpoint(path)["meta"]  # its objective, for encode efforts, before the file goes
    finally:
        os.unlink(path)
    if device != "cpu":
        codec.model.to(device)
    return codec


class CodecWorker:
    """Compresses or decompresses the rows of a batch with the codec it loaded once."""

    def __init__(self, mode: str, checkpoint: list, suffix: str, dest: str, config: BulkConfig) -> None:
        import ray

        torch.set_num_threads(max(1, int(config.cpus_per_worker)))
        data = ray.get(checkpoint[0]) if isinstance(checkpoint[0], ray.ObjectRef) else checkpoint[0]
        device = "cuda" if config.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu"
        self.codec = load_codec(data, suffix, config.max_pixels, device)
        self.mode, self.config = mode, config
        self.store = Store(dest, config.endpoint_url) if config.dest_format == FILES else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["key"])
        out = {k: list(v) for k, v in batch.items()}
        out.update(output=[""] * n, size_out=[0] * n, pixels=[0] * n, coded_at=[0.0] * n,
                   effort=[self.config.effort if self.mode == COMPRESS else 0] * n)
        for i in range(n):
            if out["status"][i] != TODO:
                continue
            try:
                coded, pixels = self._code(out["data"][i])
                target = (compressed_key if self.mode == COMPRESS else restored_key)(out["key"][i])
                if self.store is not None:
                    self.store.put(target, coded)
                    out["data"][i] = None
                else:
                    out["data"][i] = coded
                out["status"][i], out["output"][i] = "done", target
                out["size_out"][i], out["pixels"][i] = len(coded), pixels
                out["coded_at"][i] = time.time()
            except Exception as exc:  # one bad input never stops the batch
                out["status"][i], out["data"][i] = "failed", None
                out["reason"][i], out["detail"][i] = _reason(exc, self.mode)
        return out

    def _code(self, data: bytes) -> tuple[bytes, int]:
        if self.mode == COMPRESS:
            image = self.codec.load(bytes(data))
            data = self.codec.encode(image, effort=self.config.effort, lam=self.config.lam, quality=self.config.quality)
            return data, image.width * image.height
        image = self.codec.decompress(bytes(data))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue(), image.width * image.height


def _reason(exc: Exception, mode: str) -> tuple[str, str]:
    """(reason category, one-line detail) of a failed input."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ModelMismatchError):
        return "model_mismatch", first
    if isinstance(exc, BitstreamError):
        return "bad_bitstream", first
    if isinstance(exc, TexpressError):
        return classify(first), first
    if isinstance(exc, OSError):
        return "write_failed", first
    return ("corrupt" if mode == COMPRESS else "bad_bitstream"), f"unexpected error ({type(exc).__name__}: {first})"
