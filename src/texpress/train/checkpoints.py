"""The single-process trainer's checkpoints: pairs in OUT/checkpoints, `step_NNNNNNN.ckpt` (the model
checkpoint format: config + tensors) and `step_NNNNNNN.resume.pt` (D, optimizers, schedules, rate
control, step, history, data seed, MLflow run id, the run identity), each written atomically, the
resume file last, so the newest step with both files is complete."""

from __future__ import annotations

from pathlib import Path

import torch

from texpress.codec.checkpoint import read_checkpoint, save_checkpoint
from texpress.errors import InputError
from texpress.files import write_atomic
from texpress.train.state import Session

CHECKPOINT_DIR = "checkpoints"
RESUME_FORMAT = "texpress-train-resume"


def pair_paths(ckpt_dir: Path, step: int) -> tuple[Path, Path]:
    return ckpt_dir / f"step_{step:07d}.ckpt", ckpt_dir / f"step_{step:07d}.resume.pt"


def _steps(ckpt_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1].split(".")[0]) for p in ckpt_dir.glob("step_*.resume.pt"))


def latest_checkpoint(ckpt_dir: Path) -> int | None:
    """The newest step with both files (the resume file is written last)."""
    steps = [step for step in _steps(ckpt_dir) if pair_paths(ckpt_dir, step)[0].is_file()]
    return max(steps) if steps else None


def save_checkpoint_pair(s: Session, ckpt_dir: Path, identity: str, keep: int) -> None:
    """Write the pair of s.step; keep the newest `keep` pairs."""
    model_path, resume_path = pair_paths(ckpt_dir, s.step)
    save_checkpoint(s.t.codec, model_path, meta={"steps": s.step, "preset": s.preset, "partial": True})
    state = {**s.state(with_model=False), "format": RESUME_FORMAT, "identity": identity}
    write_atomic(resume_path, writer=lambda tmp: torch.save(state, tmp))
    for old in _steps(ckpt_dir)[:-keep]:
        for p in pair_paths(ckpt_dir, old):
            p.unlink(missing_ok=True)


def load_resume(ckpt_dir: Path, identity: str) -> dict | None:
    """The newest checkpoint as a training state (model tensors from the .ckpt), None when there is
    none; an InputError when it belongs to a run with other settings or data."""
    step = latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    if step is None:
        return None
    model_path, resume_path = pair_paths(ckpt_dir, step)
    try:
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{resume_path}: not a readable resume file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise InputError(f"{resume_path}: not a texpress resume file")
    if state.get("identity") != identity:
        raise InputError(f"{ckpt_dir} holds checkpoints of a run with other settings or data; "
                         f"use another output folder or remove {ckpt_dir}")
    state["model"] = read_checkpoint(model_path)["state_dict"]
    return state
