"""Checkpoint I/O: the model config plus tensors (weights and entropy-coder CDF tables), never pickled
modules. `.safetensors` files keep the config in the header metadata; anything else is a torch file
read back with weights_only=True."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from texpress.codec.config import ModelConfig
from texpress.codec.model import TexpressModel
from texpress.errors import CheckpointError, ConfigError
from texpress.files import write_atomic

FORMAT = "texpress-checkpoint"
FORMAT_VERSION = 1  # full CDF tables
RAGGED_VERSION = 2  # CDF tables stored without their zero padding (float16 checkpoints)
RAGGED = ".ragged"


def fingerprint(model: TexpressModel) -> str:
    """A hash of every tensor in the state dict (weights and CDF tables), 32 hex digits.

    Two models decode each other's bitstreams only if their fingerprints match."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # flat: a channels_last (N, C, 1, 1) counts as contiguous
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def build_model(cfg: ModelConfig, seed: int | None = None) -> TexpressModel:
    if seed is not None:
        torch.manual_seed(seed)
    return TexpressModel(cfg)


def transplant(model: TexpressModel, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of `state` whose name and shape `model` shares (a warm start into a larger
    architecture: lite-q1's transforms into a checkerboard or variable-rate lite). Returns the names of
    the model's tensors that kept their fresh initialisation; none shared at all is an error."""
    own = model.state_dict()
    resized = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table")  # CompressAI resizes these
    shared = {k: v for k, v in state.items() if k in own and (own[k].shape == v.shape or k.endswith(resized))}
    if not any(k.startswith(("encoder.", "generator.")) for k in shared):
        raise CheckpointError("the checkpoint shares no encoder or generator weights with this architecture")
    model.load_state_dict(shared, strict=False)
    return sorted(k for k in own if k not in shared)


def round_weights_to_half(model: TexpressModel) -> None:
    """Round every float parameter to its nearest float16 value, in place. A checkpoint that stores
    them in float16 is then half the size and holds exactly this model (same fingerprint, same
    bitstreams); buffers (CDF tables, the scale table) keep their own types."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.half().float())


def save_checkpoint(model: TexpressModel, path: str | os.PathLike, *, meta: dict[str, Any] | None = None,
                    update: bool = True, half: bool = False) -> str:
    """Write a ready-to-code checkpoint (CDF tables refreshed unless update=False); returns its fingerprint.
    half=True rounds the model's weights to float16 first (round_weights_to_half) and stores them so."""
    model = getattr(model, "module", model)  # unwrap DDP
    if half:
        round_weights_to_half(model)
    if update:
        model.update(force=True)
    params = {name for name, p in model.named_parameters() if p.is_floating_point()} if half else set()
    state = {k: (v.half() if k in params else v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = ragged_cdfs(state)
    version = RAGGED_VERSION if half else FORMAT_VERSION
    fp = fingerprint(model)
    meta = dict(meta or {})
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file  # optional: the single-process trainer runs without it

        header = {"format": FORMAT, "format_version": str(version), "config": json.dumps(model.config.to_dict()),
                  "fingerprint": fp, "meta": json.dumps(meta)}
        write_atomic(path, writer=lambda p: save_file(state, str(p), metadata=header))
    else:
        # through JSON: pickle shares equal objects by identity, so a config built in code and the same
        # config read back from a file would otherwise give different bytes for the same checkpoint
        config, meta = json.loads(json.dumps(model.config.to_dict())), json.loads(json.dumps(meta))
        payload = {"format": FORMAT, "format_version": version, "config": config,
                   "fingerprint": fp, "meta": meta, "state_dict": state}
        write_atomic(path, writer=lambda p: torch.save(payload, p))
    return fp


def ragged_cdfs(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each `*._quantized_cdf` table as one flat tensor of its rows' first `_cdf_length` entries.

    The tables are padded with zeros to their longest row: base's Gaussian table is 256 x 3133 int32
    (3.2 MB) of which about 0.4 MB are used. Dropping the padding is exact (padded_cdfs restores it)."""
    out = dict(state)
    for key in [k for k in state if k.endswith("._quantized_cdf")]:
        lengths = state[key.removesuffix("_quantized_cdf") + "_cdf_length"].tolist()
        table = out.pop(key)
        out[key + RAGGED] = torch.cat([row[:n] for row, n in zip(table, lengths)])
    return out


def padded_cdfs(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ragged_cdfs: full zero-padded tables, as the entropy coder holds them."""
    out = dict(state)
    for key in [k for k in state if k.endswith("._quantized_cdf" + RAGGED)]:
        name = key.removesuffix(RAGGED)
        lengths = state[name.removesuffix("_quantized_cdf") + "_cdf_length"].tolist()
        flat = out.pop(key)
        table = torch.zeros(len(lengths), max(lengths, default=0), dtype=flat.dtype)
        for i, row in enumerate(torch.split(flat, lengths)):
            table[i, :len(row)] = row
        out[name] = table
    return out


def compact_checkpoint(source: str | os.PathLike, target: str | os.PathLike) -> str:
    """Copy a checkpoint with float16 weights (save_checkpoint(half=True)); returns the new fingerprint."""
    meta = {**read_checkpoint(source)["meta"], "weights": "float16"}
    return save_checkpoint(load_model(source), target, meta=meta, half=True)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload: format, config (dict), fingerprint, meta, state_dict.

    `path` is a file: a shipped model's name or a models:/ URI is resolved to one before
    (texpress.registry.refs.resolve_checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open  # optional: the single-process trainer runs without it

            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
            payload = {"format": header.get("format"), "format_version": int(header.get("format_version", 0)),
                       "config": json.loads(header["config"]), "fingerprint": header.get("fingerprint"),
                       "meta": json.loads(header.get("meta", "{}")), "state_dict": state}
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt zip, wrong file, unpickling refused: all one user error
        raise CheckpointError(f"{path}: not a readable texpress checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a texpress checkpoint")
    if payload.get("format_version") not in (FORMAT_VERSION, RAGGED_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported")
    if payload["format_version"] == RAGGED_VERSION:
        payload["state_dict"] = padded_cdfs(payload["state_dict"])
    return payload


def load_model(path: str | os.PathLike) -> TexpressModel:
    """Build the model from the stored config and load its tensors; returned in eval mode."""
    payload = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(payload["config"])
        model = TexpressModel(cfg)
        model.load_state_dict(payload["state_dict"])
    except (ConfigError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not match its config ({str(exc).splitlines()[0]})") from None
    return model.eval()
