"""Students built from a teacher without pruning: another architecture over the teacher's latent.

A student spec is a preset name, a JSON file holding a ModelConfig (all of it, or only the fields
that differ from the teacher's), or inline overrides of the teacher's config such as
`up_kernel=3,gen_widths=48/32/24/16/3`. The student takes every teacher tensor of the same name and
shape (the whole latent side when only the generator differs, so it stays decode-compatible), and a
conv whose kernel is smaller than the teacher's starts from the centre of the teacher's kernel (for
the stride-2 transposed convs of the generator that is the same taps, with the same phase).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from texpress.codec.checkpoint import transplant
from texpress.codec.config import PRESETS, ModelConfig
from texpress.codec.model import TexpressModel
from texpress.errors import ConfigError


def _value(text: str):
    if "/" in text:
        return [int(v) for v in text.split("/")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def student_config(spec: str, teacher: ModelConfig) -> ModelConfig:
    """The student's ModelConfig from a spec (module doc); ConfigError when it is none of them."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"{spec}: no such student config file")
        try:
            fields = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigError(f"{spec}: not a JSON config ({exc})") from None
        return ModelConfig.from_dict({**teacher.to_dict(), **fields})
    if "=" not in spec:
        raise ConfigError(f"--student {spec!r}: not a checkpoint, a preset ({', '.join(PRESETS)}), a .json "
                          "config or key=value overrides")
    fields = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--student: {item!r} is not key=value")
        fields[key.strip()] = _value(value.strip())
    return ModelConfig.from_dict({**teacher.to_dict(), **fields})


def centre_crop_kernels(student: TexpressModel, teacher_state: dict[str, torch.Tensor]) -> list[str]:
    """Conv weights the student holds at a smaller odd kernel than the teacher (same channels) start from
    the centre of the teacher's kernel. Returns their names."""
    own = student.state_dict()
    done = []
    with torch.no_grad():
        for name, w in own.items():
            t = teacher_state.get(name)
            if t is None or t.dim() != 4 or w.dim() != 4 or t.shape[:2] != w.shape[:2] or t.shape == w.shape:
                continue
            (kh, kw), (th, tw) = w.shape[-2:], t.shape[-2:]
            if kh > th or kw > tw or (th - kh) % 2 or (tw - kw) % 2:
                continue
            r, c = (th - kh) // 2, (tw - kw) // 2
            w.copy_(t[:, :, r:r + kh, c:c + kw])
            done.append(name)
    return done


def student_from_teacher(teacher: TexpressModel, cfg: ModelConfig, seed: int = 0) -> TexpressModel:
    """A fresh `cfg` model that takes the teacher's tensors wherever they fit (module doc)."""
    torch.manual_seed(seed)
    student = TexpressModel(cfg)
    state = teacher.state_dict()
    transplant(student, state)
    centre_crop_kernels(student, state)
    return student.eval()
