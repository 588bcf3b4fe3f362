"""Which device the single-process trainer runs on, its precision, and the CUDA settings that pay there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Precision:
    """How the training steps compute: bfloat16 autocast (amp) and channels_last tensors."""

    amp: torch.dtype | None
    channels_last: bool

    @property
    def name(self) -> str:
        return ("bf16" if self.amp is not None else "fp32") + ("-channels-last" if self.channels_last else "")


def native_bf16() -> bool:
    """True on a CPU with bfloat16 instructions (AVX512-BF16 or AMX-BF16; Linux's /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(device: torch.device, amp: bool | None) -> Precision:
    """amp None: bfloat16 autocast with channels_last on a CPU with bfloat16 instructions (2.4x the
    float32 steps/s at the same loss after equal steps here, benchmarks/train_cpu.py), else float32.
    True forces bfloat16 autocast on any device, False float32."""
    if amp is None:
        amp = device.type == "cpu" and native_bf16()
    return Precision(torch.bfloat16 if amp else None, channels_last=amp and device.type == "cpu")
