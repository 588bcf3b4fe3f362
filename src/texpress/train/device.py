"""Which device the single-process trainer runs on, and the CUDA settings that pay there."""

from __future__ import annotations

import torch

from texpress.errors import ConfigError


def pick_device(name: str | None) -> torch.device:
    """`name` (cpu, cuda, cuda:1, mps), or cuda when there is a GPU, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available to torch here")
    return device


def tune_for(device: torch.device) -> None:
    """On CUDA: cuDNN autotuning and TF32 matmuls and convolutions."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
