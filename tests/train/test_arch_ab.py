"""The architecture A/B harness end to end on a tiny configuration: references, a preset, a
YAML-configured checkerboard arm and a variable-rate twin trained on the same crops, coded for real,
written as JSON."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from texpress.samples import sample_photos

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_ab_run_writes_every_arm_and_metric(tmp_path):
    photos = sample_photos()
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    for p in photos[:3]:
        shutil.copy(p, train / p.name)
    shutil.copy(photos[-1], val / photos[-1].name)
    arm_yaml = tmp_path / "narrow.yaml"
    arm_yaml.write_text("preset: lite\ngen_widths: [48, 32, 24, 16, 3]\nentropy: checkerboard\n")
    out = tmp_path / "arch_ab.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "arch_ab.py"), "--train", str(train), "--val", str(val),
         "--arms", "bmshj2018-hyperprior,mbt2018-mean,lite", "--config", f"narrow={arm_yaml}",
         "--lambdas", "0.003,0.1", "--steps", "3", "--batch", "2", "--crop", "64", "--val-crop", "128",
         "--val-images", "1", "--vr", "lite", "--baseline", "lite", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Equal steps on equal data" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["arms"]) == {"bmshj2018-hyperprior", "mbt2018-mean", "lite", "narrow", "lite-vr"}
    assert report["settings"]["steps"] == 3
    for name, arm in report["arms"].items():
        assert [p["lambda"] for p in arm["points"]] == [0.003, 0.1]
        assert arm["steps_per_s"] > 0
        for p in arm["points"]:
            assert p["bytes"] > 0 and p["bpp"] == 8 * p["bytes"] / (128 * 128)
            assert 0 < p["psnr"] < 100 and 0 <= p["ms_ssim"] <= 1
        assert arm["decoder_kmac_per_px"] > 0 and arm["decode_ms_per_mpx"] > 0
        assert set(arm["bd_rate"]) == {"bmshj2018-hyperprior", "mbt2018-mean", "lite"}
        for ref in arm["bd_rate"].values():  # a number, or None with the reason
            for metric in ("psnr-rgb", "ms-ssim-rgb"):
                assert ref[metric] is not None or ref[f"{metric}-why"]
    self_bd = report["arms"]["bmshj2018-hyperprior"]["bd_rate"]["bmshj2018-hyperprior"]["psnr-rgb"]
    assert self_bd in (None, 0.0)  # None when 3 steps leave both lambdas at the same quality
    assert report["arms"]["narrow"]["config"]["entropy"] == "checkerboard"
    vr = report["arms"]["lite-vr"]  # one model, trained for 2 x 3 steps, coded at both levels
    assert vr["twin_of"] == "lite" and [p["quality"] for p in vr["points"]] == [0.0, 100.0]
    high, low = vr["config"]["rate_lambdas"]  # c / lambda: the lowest lambda is level 0, the lowest rate
    assert abs(high / low - 0.1 / 0.003) < 1e-9
    assert abs(high * low - 1) < 1e-9  # c is the lambdas' geometric mean


def test_unknown_arm_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "arch_ab.py"), "--arms", "nope",
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: unknown arm 'nope'; choose from bmshj2018-hyperprior, "
                                                "mbt2018-mean, hific, base, lite, lite-vr, lite-cg or give a ModelConfig YAML with --config"]


def test_vr_twin_of_an_unknown_arm_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "arch_ab.py"), "--arms", "lite",
                           "--vr", "base", "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --vr base: not one of this run's arms (lite)"]


def test_warm_started_bfloat16_arms_start_from_the_trained_transforms(tmp_path):
    """--init gives every texpress arm the checkpoint's shared tensors (a checkerboard arm's context
    starts fresh), so two bfloat16 steps already code like a trained model; a reference arm refuses it."""
    photo = sample_photos()[0]
    arm_yaml = tmp_path / "cb.yaml"
    arm_yaml.write_text("preset: lite\nentropy: checkerboard\n")
    out = tmp_path / "arch_ab.json"
    args = [sys.executable, str(ROOT / "benchmarks" / "arch_ab.py"), "--train", str(photo), "--val", str(photo),
            "--lambdas", "0.01,0.03", "--steps", "2", "--batch", "2", "--crop", "64", "--val-crop", "128",
            "--val-images", "1", "--amp", "--init", "lite-q1", "--out", str(out)]
    proc = subprocess.run([*args, "--arms", "lite", "--config", f"cb={arm_yaml}"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["settings"]["amp"] is True and report["settings"]["init"] == "lite-q1"
    for arm in report["arms"].values():  # from scratch, two steps code at about 10 dB
        assert all(p["psnr"] > 22 for p in arm["points"]), arm["points"]
    proc = subprocess.run([*args, "--arms", "bmshj2018-hyperprior"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --init: the reference arm bmshj2018-hyperprior has no "
                                                "texpress tensors to start from"]
