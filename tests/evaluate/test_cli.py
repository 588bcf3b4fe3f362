"""`texpress eval run` and `texpress eval bd-rate` as a user runs them: real subprocesses on crops of
the scikit-image photos, exit codes, one-line errors, and every output file checked."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from texpress.evaluate.baselines import BASELINES
from texpress.evaluate.curves import load_curve
from texpress.evaluate.texture import TEXTURE_METRICS

FIXTURES = Path(__file__).parent / "fixtures"


def texpress(*args: str, check_rc: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, crop_files, ckpt_pair):
    """One run: 3 photo crops + 1 corrupt file, two checkpoints forming one model curve, all six baselines."""
    root = tmp_path_factory.mktemp("eval-cli")
    bad = root / "broken.png"
    bad.write_bytes(crop_files[0].read_bytes()[:200])
    out = root / "out"
    proc = texpress("eval", "run", *map(str, crop_files), str(bad), "-m", str(ckpt_pair[0]), "-m", str(ckpt_pair[1]),
                    "-o", str(out), "--figure-image", "coffee", check_rc=1)
    return {"out": out, "proc": proc, "images": crop_files, "bad": bad, "ckpts": ckpt_pair}


def test_a_bad_file_is_reported_and_the_batch_goes_on(evaluation):
    err = evaluation["proc"].stderr
    assert "broken.png" in err and "error:" in err
    summary = json.loads((evaluation["out"] / "summary.json").read_text())
    assert summary["images"]["count"] == 3
    assert [f["image"] for f in summary["images"]["failures"]] == ["broken.png"]


def test_per_image_csv_has_every_image_at_every_point(evaluation):
    rows = list(csv.DictReader((evaluation["out"] / "per_image.csv").open()))
    points = {(r["curve"], r["point"]) for r in rows}
    assert len(points) == 2 + sum(len(b.default_qualities) for b in BASELINES.values())
    assert len(rows) == 3 * len(points)
    for r in rows:
        w, h = int(r["width"]), int(r["height"])
        assert (w, h) == (160, 128)
        assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (w * h))
        for m in ("psnr-rgb", "ms-ssim-rgb", *TEXTURE_METRICS):
            assert r[m] != "", (r["curve"], r["point"], m)
    models = [r for r in rows if r["kind"] == "model"]
    assert {r["point"] for r in models} == {"lite-seed0", "lite-seed1"}
    assert {r["curve"] for r in models} == {"texpress"}


def test_summary_has_curves_bd_rates_and_texture_scores(evaluation):
    s = json.loads((evaluation["out"] / "summary.json").read_text())
    assert set(s["curves"]) == {"texpress", *BASELINES}
    model = s["curves"]["texpress"]
    assert model["kind"] == "model" and len(model["points"]) == 2
    assert [c["point"] for c in model["settings"]["checkpoints"]] == ["lite-seed0", "lite-seed1"]
    for name in BASELINES:
        c = s["curves"][name]
        assert c["kind"] == "baseline" and len(c["points"]) == len(BASELINES[name].default_qualities)
        bpps = [p["bpp"] for p in c["points"]]
        assert bpps == sorted(bpps)
        assert c["settings"]["library"] and c["settings"]["chroma"]
        for p in c["points"]:
            assert p["images"] == 3
            assert set(TEXTURE_METRICS) <= set(p)
        # the texture scores move the right way along a baseline's sweep: near neutral at the high end
        assert c["points"][0]["texture-distance"] > c["points"][-1]["texture-distance"]
        assert 0.8 < c["points"][-1]["hf-ratio"] < 1.2, name
        entry = s["bd_rate"]["texpress"][name]
        assert set(entry) >= {"psnr-rgb", "ms-ssim-rgb"}
        # untrained models sit far below every baseline: no shared quality range, said so
        assert entry["psnr-rgb"] is None and "overlap" in entry["note"]
    assert s["curves"]["jpeg2000"]["points"][0]["hf-ratio"] < 0.5  # wavelet blur at 0.1 bpp
    assert set(s["figure"]) == {"image", "crop"} and s["figure"]["image"] == "coffee.png"


def test_figures_and_curve_files(evaluation):
    out = evaluation["out"]
    for name in ("rd_psnr.png", "rd_msssim.png", "texture.png", "crops.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 400
    for name in ("texpress", *BASELINES):
        curve_name, results = load_curve(str(out / "curves" / f"{name}.json"))
        assert curve_name == name and len(results["bpp"]) == len(results["psnr-rgb"])
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    rd = list(csv.DictReader((out / "rd.csv").open()))
    assert len(rd) == 2 + sum(len(b.default_qualities) for b in BASELINES.values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3
    assert set(metrics["texpress"]) == {"lite-seed0", "lite-seed1"}
    assert set(metrics["bd_rate"]) == {f"texpress_vs_{b}" for b in BASELINES}


def test_bd_rate_command_between_two_baselines_of_the_run(evaluation):
    summary = evaluation["out"] / "summary.json"
    proc = texpress("eval", "bd-rate", f"{summary}#jpeg", f"{summary}#avif")
    assert proc.stdout.startswith("BD-rate (psnr-rgb) of avif against jpeg: -")
    value = float(proc.stdout.split(":")[-1].strip().rstrip("%"))
    assert -80 < value < 0  # AVIF needs fewer bits than JPEG for the same PSNR
    again = texpress("eval", "bd-rate", str(evaluation["out"] / "curves" / "jpeg.json"),
                     str(evaluation["out"] / "curves" / "avif.json"))
    assert again.stdout == proc.stdout


def test_bd_rate_command_on_compressai_results():
    proc = texpress("eval", "bd-rate", str(FIXTURES / "kodak-jpeg.json"),
                    str(FIXTURES / "kodak-bmshj2018-hyperprior-mse.json"))
    assert proc.stdout.strip() == "BD-rate (psnr-rgb) of bmshj2018-hyperprior against JPEG: -54.99%"
    proc = texpress("eval", "bd-rate", str(FIXTURES / "kodak-vtm.json"),
                    str(FIXTURES / "kodak-bmshj2018-hyperprior-mse.json"), "--metric", "ms-ssim-rgb")
    assert "ms-ssim-rgb" in proc.stdout and "%" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["eval", "bd-rate", "missing.json", "also-missing.json"], "missing.json: no such curve file"),
    (["eval", "bd-rate", str(FIXTURES / "kodak-jpeg.json"), str(FIXTURES / "kodak-webp.json"), "--metric", "lpips"],
     "--metric must be one of"),
    (["eval", "run", "nothing-here.png", "-o", "OUT", "-b", "jpeg"], "no images to evaluate"),
    (["eval", "run", "IMG", "-o", "OUT", "-m", "missing.ckpt"], "no such checkpoint file"),
    (["eval", "run", "IMG", "-o", "OUT", "-b", "jpeg,bpg"], "unknown baseline 'bpg'"),
    (["eval", "run", "IMG", "-o", "OUT", "-b", "none"], "nothing to evaluate"),
    (["eval", "run", "IMG", "-o", "FILE", "-b", "jpeg"], "exists and is not a folder"),
    (["eval", "run", "IMG", "-o", "OUT", "-m", "../x=model.ckpt"], "model label '../x'"),
    (["eval", "run", "IMG", "-o", "OUT", "-b", "jpeg", "--crop", "8x8"], "crop must be [width, height]"),
    (["eval", "run", "IMG", "-o", "OUT", "-b", "jpeg", "--params", "PARAMS"], "section 'evaluate' must be a mapping"),
    (["eval", "bd-rate", "NULLS", str(FIXTURES / "kodak-jpeg.json")], "curve A holds values that are not numbers"),
])
def test_usage_errors_are_one_line(args, message, crop_files, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "params.yaml").write_text("evaluate: [jpeg, webp]\n")
    (tmp_path / "nulls.json").write_text('{"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30, "n/a"]}}')
    files = {"IMG": crop_files[0], "OUT": tmp_path / "out", "FILE": tmp_path / "file",
             "PARAMS": tmp_path / "params.yaml", "NULLS": tmp_path / "nulls.json"}
    args = [str(files[a]) if a in files else a for a in args]
    proc = texpress(*args, check_rc=2)
    assert message in proc.stderr
    assert all(line.startswith("error: ") for line in proc.stderr.strip().splitlines()), proc.stderr
    assert not (tmp_path / "out").exists()  # a usage error creates nothing


def test_summary_with_several_curves_needs_a_selector(evaluation):
    proc = texpress("eval", "bd-rate", str(evaluation["out"] / "summary.json"),
                    str(FIXTURES / "kodak-jpeg.json"), check_rc=2)
    assert "pick one with" in proc.stderr


def test_labelled_checkpoints_form_separate_curves(tmp_path, crop_files, ckpt_pair):
    """In process (typer's CliRunner on the eval sub-app) to spare a second interpreter start."""
    import typer
    from typer.testing import CliRunner

    from texpress.cli import evaluate as commands

    app = typer.Typer()
    commands.register(app)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "run", str(crop_files[1]), "-m", f"a={ckpt_pair[0]}", "-m",
                                      f"b={ckpt_pair[1]}", "-b", "jpeg", "-q", "jpeg=20,80", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    assert {k: c["kind"] for k, c in s["curves"].items()} == {"a": "model", "b": "model", "jpeg": "baseline"}
    assert [p["quality"] for p in s["curves"]["jpeg"]["points"]] == [20, 80]
    assert set(s["bd_rate"]) == {"a", "b"}


def test_a_second_run_into_the_same_folder_leaves_no_stale_results(tmp_path, crop_files):
    """In process, like the test above. Curve files and figures of an earlier run must not pass for this run's."""
    import typer
    from typer.testing import CliRunner

    from texpress.cli import evaluate as commands

    app = typer.Typer()
    commands.register(app)
    out = tmp_path / "out"
    for baselines in ("jpeg,webp", "jpeg"):
        result = CliRunner().invoke(app, ["eval", "run", str(crop_files[2]), "-b", baselines, "-q", "jpeg=20,80",
                                          "-q", "webp=20,80", "--quiet", "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "curves").iterdir()) == ["jpeg.json"]
    assert set(json.loads((out / "summary.json").read_text())["curves"]) == {"jpeg"}
