import json
import math
from pathlib import Path

import pytest
import torch

from texpress.codec.checkpoint import load_model, save_checkpoint
from texpress.slim.prune import prune_model

from .test_distill import texpress


def test_report_runs_on_two_checkpoints(tmp_path, tiny_teacher, photo_dir):
    pruned = tmp_path / "pruned.ckpt"
    save_checkpoint(prune_model(load_model(tiny_teacher), 0.5).model, pruned, meta={"slim": {"decode_compatible": True}})
    out = tmp_path / "report"
    r = texpress("slim", "report", tiny_teacher, pruned, "--images", photo_dir, "--limit", "2", "--rounds", "1",
                 "-o", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tiny-vr" in r.stdout and "pruned" in r.stdout and "WebP" in r.stdout
    report = json.loads((out / "report.json").read_text())
    teacher, student = report["rows"]
    assert report["images"] == 2 and report["webp_decode_ms"] > 0
    assert teacher["bd_rate"] == 0.0  # (random weights give no usable curve for the student's BD-rate)
    assert student["decoder_kmac_per_px"] < teacher["decoder_kmac_per_px"]
    assert student["decoder_kmac_share"] < 1 and teacher["speedup"] == 1.0
    assert student["decode_ms_per_mpx"] > 0 and teacher["peak_decode_mb"] >= 0
    assert set(teacher["curve"]) == {"0", "25", "50", "75", "100"}
    assert student["decode_compatible"] is True and teacher["decode_compatible"] is None
    for row in (teacher, student):
        assert 0 < row["bpp"] and 0 < row["psnr"] < 60 and 0 < row["ms_ssim"] <= 1
        assert row["texture_distance"] >= 0 and row["checkerboard"] >= 0
    assert (out / "pareto.png").stat().st_size > 1000


def test_report_of_an_unknown_checkpoint_is_one_error_line(tmp_path):
    r = texpress("slim", "report", tmp_path / "missing.ckpt", "--rounds", "1")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")


SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped" / "lite-vr.ckpt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped lite-vr is not in this checkout")
def test_bd_rate_against_the_shipped_teacher(tmp_path, photo_dir):
    """A perturbed generator of the trained lite-vr costs rate at equal PSNR (the teacher decodes its files)."""
    model = load_model(SHIPPED)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.mul_(1 + 0.1 * torch.randn_like(p))
    pruned = tmp_path / "perturbed.ckpt"
    save_checkpoint(model, pruned)
    r = texpress("slim", "report", SHIPPED, pruned, "--images", photo_dir, "--limit", "2", "--rounds", "1",
                 "-o", tmp_path / "report")
    assert r.returncode == 0, r.stderr[-2000:]
    teacher, student = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    assert teacher["bd_rate"] == 0.0 and student["bd_rate"] > 0
    assert student["psnr"] < teacher["psnr"]
