import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from texpress.codec.api import Codec
from texpress.errors import ModelMismatchError

from texpress.codec.checkpoint import build_model, load_model, read_checkpoint, save_checkpoint
from texpress.codec.model import pad_to_multiple
from texpress.train.distill import decode_compatible, latent_tensors, same_tensors

from .conftest import TINY_VR

TEXPRESS = [sys.executable, "-m", "texpress.cli"]


def texpress(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "300"}  # the report's wide table on one line per row
    return subprocess.run([*TEXPRESS, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def distance(student, teacher, x) -> float:
    """MSE between the two generators' outputs on the teacher's coded latents of x, at three qualities."""
    total = 0.0
    with torch.no_grad():
        for q in (0.0, 50.0, 100.0):
            y_hat = teacher(x, q)["y_hat"]
            total += float(torch.mean((student.generator(y_hat) - teacher.generator(y_hat)) ** 2))
    return total


def test_prune_records_how_and_from_what(tmp_path, tiny_teacher):
    pruned = tmp_path / "pruned.ckpt"
    r = texpress("slim", "prune", "--from", tiny_teacher, "--ratio", "0.5", "--set", "up_kernel=3", "-o", pruned)
    assert r.returncode == 0, r.stderr
    assert "decode-compatible: yes" in r.stdout
    meta = read_checkpoint(pruned)["meta"]["slim"]
    assert meta["pruned"] == {"ratio": 0.5, "part": "generator", "criterion": "magnitude"}
    assert meta["set"] == "up_kernel=3" and meta["decode_compatible"] is True
    assert load_model(pruned).config.gen_widths == (8, 8, 6, 4, 3)


def test_distillation_lowers_the_student_teacher_distance(tmp_path, tiny_teacher, photo_dir):
    """A fresh narrower generator over the teacher's latent learns the teacher's reconstructions."""
    out = tmp_path / "run"
    common = ["--teacher", tiny_teacher, "--student", "gen_widths=8/8/6/4/3", "--steps", "40", "-o", out,
              "--images", photo_dir, "--batch-size", "2", "--crop", "64", "--lr", "3e-3", "--no-mlflow",
              "--distill-weight", "50", "--feature-weight", "0.1"]
    r = texpress("slim", "distill", *common, "--params", tmp_path / "none.yaml")
    assert r.returncode == 2 and r.stderr.count("error:") == 1  # a missing params file: one line
    r = texpress("slim", "distill", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    teacher, before, after = load_model(tiny_teacher), load_model(out / "student_init.ckpt"), load_model(out / "model.ckpt")
    x = pad_to_multiple(torch.rand(1, 3, 64, 96))
    assert distance(after, teacher, x) < 0.5 * distance(before, teacher, x)
    meta = read_checkpoint(out / "model.ckpt")["meta"]["slim"]
    assert meta["trainable"] == "generator" and meta["decode_compatible"] is True
    assert meta["built_from"] == "gen_widths=8/8/6/4/3"
    assert meta["teacher"] == read_checkpoint(tiny_teacher)["fingerprint"]
    assert same_tensors(latent_tensors(after), latent_tensors(teacher))  # frozen: the latent side is the teacher's
    # the student decodes the teacher's files (same y_hat, its own generator); an unrelated model does not
    rgb = (np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)
    data = Codec.from_checkpoint(tiny_teacher).compress(rgb, quality=40)
    student = Codec.from_checkpoint(out / "model.ckpt")
    y_hat = student.open(data).latent()
    assert torch.equal(y_hat, Codec.from_checkpoint(tiny_teacher).open(data).latent())
    assert np.asarray(student.decompress(data)).shape == (60, 80, 3)
    with pytest.raises(ModelMismatchError):
        Codec.from_checkpoint(out / "student_init.ckpt").decompress(data)  # built by slim, not a distilled one


def test_a_full_student_trains_its_encoder_too(tmp_path, tiny_teacher, photo_dir):
    out = tmp_path / "run"
    r = texpress("slim", "distill", "--teacher", tiny_teacher, "--student", "enc_widths=3/8/8/8/8", "--steps", "4",
                 "-o", out, "--images", photo_dir, "--batch-size", "2", "--crop", "64", "--no-mlflow", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    student = load_model(out / "model.ckpt")
    assert student.config.enc_widths == (3, 8, 8, 8, 8)
    meta = read_checkpoint(out / "model.ckpt")["meta"]["slim"]
    assert meta["trainable"] == "all"
    assert meta["decode_compatible"] == decode_compatible(student, load_model(tiny_teacher))


@pytest.mark.parametrize("student, message", [
    ("rate_lambdas=4/2", "rate levels"),
    ("lite", "rate levels"),
    ("nonsense", "not a checkpoint"),
    ("up_kernel=0", "up_kernel"),
])
def test_incompatible_pairs_get_one_error_line(tmp_path, tiny_teacher, photo_dir, student, message):
    r = texpress("slim", "distill", "--teacher", tiny_teacher, "--student", student, "--steps", "2", "-o",
                 tmp_path / "run", "--images", photo_dir, "--no-mlflow", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr


def test_generator_only_needs_the_teachers_latent(tmp_path, tiny_teacher, photo_dir):
    other = tmp_path / "other.ckpt"
    save_checkpoint(build_model(TINY_VR, seed=9), other)
    r = texpress("slim", "distill", "--teacher", tiny_teacher, "--student", other, "--part", "generator",
                 "--steps", "2", "-o", tmp_path / "run", "--images", photo_dir, "--no-mlflow", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "encoder and entropy model" in r.stderr


def test_bad_ratio_is_one_error_line(tmp_path, tiny_teacher):
    r = texpress("slim", "prune", "--from", tiny_teacher, "--ratio", "1.5", "-o", tmp_path / "x.ckpt")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "ratio" in r.stderr
    assert not (tmp_path / "x.ckpt").exists()
