"""`texpress slim distill`: a training run of a student against its teacher, on the project's trainers.

The student (a pruned checkpoint, or a config built over the teacher: slim.students) is written as the
run's warm start, and the run is an ordinary training run (the single-process trainer or Ray Train)
with `train.teacher` set (texpress.train.distill adds the distillation terms). A generator-only
student (`trainable=generator`) keeps the teacher's encoder and entropy model frozen and stays
decode-compatible with the teacher's files; the checkpoint's meta says so (`slim.decode_compatible`).
"""

from __future__ import annotations

import os
from pathlib import Path

from texpress.codec.checkpoint import load_model, read_checkpoint, save_checkpoint
from texpress.codec.model import TexpressModel
from texpress.errors import CheckpointError, ConfigError
from texpress.slim.students import student_config, student_from_teacher
from texpress.train.config import TrainConfig
from texpress.train.distill import check_pair, latent_tensors, same_tensors

STUDENT_FILE = "student_init.ckpt"


def build_student(teacher_path: str | os.PathLike, student: str, trainable: str, seed: int = 0) -> tuple[TexpressModel, dict]:
    """The student to start from, and its meta (a checkpoint's own, or how it was built); ConfigError
    when the pair cannot be distilled (check_pair)."""
    teacher = load_model(teacher_path)
    if Path(student).is_file() and Path(student).suffix != ".json":
        model, meta = load_model(student), dict(read_checkpoint(student)["meta"])
    else:
        cfg = student_config(student, teacher.config)
        model, meta = student_from_teacher(teacher, cfg, seed), {"slim": {"built_from": student}}
    check_pair(model.config, teacher.config, trainable)
    if trainable == "generator" and not same_tensors(latent_tensors(model), latent_tensors(teacher)):
        raise ConfigError("a generator-only student must keep the teacher's encoder and entropy model; this one "
                          "differs (pruned with --part encoder/all, or another teacher): use --part all")
    return model, meta


def distill_config(cfg: TrainConfig, teacher_path: str | os.PathLike, trainable: str, *, weight: float,
                   feature_weight: float) -> TrainConfig:
    """The training config of a distillation run: the teacher, what trains, the term weights and the
    teacher's own rate weight for a single-rate teacher (a variable-rate one has its lambdas)."""
    meta = read_checkpoint(teacher_path)["meta"]
    changes = {}
    if "lambda" in meta and cfg.fixed_lambda is None:
        changes["fixed_lambda"] = float(meta["lambda"])
    if "k_m" in meta:
        changes["k_m"] = float(meta["k_m"])
    return cfg.replace(teacher=str(teacher_path), trainable=trainable, distill_weight=weight,
                       distill_feature=feature_weight, init_from=None, **changes)


def write_student(model: TexpressModel, out_dir: str | os.PathLike, meta: dict) -> Path:
    """The run's warm start, in the output folder (the run identity hashes its fingerprint)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    path = out / STUDENT_FILE
    save_checkpoint(model, path, meta=meta)
    return path


def record_student_meta(model_path: str | os.PathLike, meta: dict) -> None:
    """Add how the student was made (its starting checkpoint's `slim` meta: pruning, spec) to the trained
    checkpoint's own `slim` meta (teacher, decode compatibility); the tensors are unchanged."""
    payload = read_checkpoint(model_path)
    merged = {**payload["meta"], "slim": {**meta.get("slim", {}), **payload["meta"].get("slim", {})}}
    save_checkpoint(load_model(model_path), model_path, meta=merged)
