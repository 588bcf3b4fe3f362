"""Distillation on Ray Train: two DDP workers train a generator-only student against a teacher; the
latent side stays frozen on every rank and the student records its teacher."""

from __future__ import annotations

import pytest

from texpress.codec.checkpoint import build_model, load_model, read_checkpoint, save_checkpoint
from texpress.codec.config import get_preset
from texpress.train.distill import latent_tensors, same_tensors
from texpress.train.ray_driver import run_training

from .conftest import small_configs

pytestmark = pytest.mark.heavy


def test_generator_only_distillation_on_two_workers(tmp_path, shards, local_ray, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    teacher_path, student_path = tmp_path / "teacher.ckpt", tmp_path / "student.ckpt"
    teacher = build_model(get_preset("lite"), seed=0)
    save_checkpoint(teacher, teacher_path)
    student = build_model(get_preset("lite").replace(gen_widths=(48, 32, 24, 16, 3)), seed=1)
    student.load_state_dict({k: v for k, v in teacher.state_dict().items() if not k.startswith("generator.")},
                            strict=False)
    save_checkpoint(student, student_path)
    cfg, loader_cfg = small_configs(rd_steps=4, gan_steps=0, teacher=str(teacher_path), trainable="generator",
                                    distill_feature=0.1, storage_path=str(tmp_path / "ray"))
    outcome = run_training(cfg, loader_cfg, shards, tmp_path / "out", init_from=student_path)
    trained = load_model(tmp_path / "out" / "model.ckpt")
    assert same_tensors(latent_tensors(trained), latent_tensors(load_model(teacher_path)))
    assert not same_tensors(dict(trained.generator.state_dict()), dict(load_model(student_path).generator.state_dict()))
    meta = read_checkpoint(tmp_path / "out" / "model.ckpt")["meta"]["slim"]
    assert meta["decode_compatible"] is True and meta["trainable"] == "generator"
    assert outcome.metrics["identical_models"]  # both ranks ended with the same student
