"""The same .tpx decodes to identical pixels with 1 or 2 threads, and alone or inside a batch:
entropy decoding depends on the scales the decoder recomputes, so any drift would corrupt it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = r"""
import hashlib, json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from texpress.codec.api import Codec
ckpt, out_dir, *inputs = sys.argv[1:]
codec = Codec.from_checkpoint(ckpt)
result = {"threads": torch.get_num_threads(), "streams": {}, "pixels": {}}
for path in inputs:
    data = codec.compress(path)
    result["streams"][path] = hashlib.sha256(data).hexdigest()
    open(f"{out_dir}/{hashlib.md5(path.encode()).hexdigest()}.tpx", "wb").write(data)
for tpx in sorted(__import__("glob").glob(f"{out_dir}/*.tpx")):
    result["pixels"][tpx.rsplit("/", 1)[1]] = hashlib.sha256(np.asarray(codec.decompress(open(tpx, "rb").read())).tobytes()).hexdigest()
print(json.dumps(result))
"""


def run_with_threads(threads: int, ckpt: Path, out_dir: Path, inputs: list[Path]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out_dir.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ckpt), str(out_dir), *map(str, inputs)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_and_two_threads_give_identical_streams_and_pixels(lite_ckpt, photos, tmp_path):
    inputs = photos[:4]
    one = run_with_threads(1, lite_ckpt, tmp_path / "t1", inputs)
    two = run_with_threads(2, lite_ckpt, tmp_path / "t2", inputs)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["streams"] == two["streams"]
    assert one["pixels"] == two["pixels"]
    # cross-decode: streams written under 2 threads, decoded under 1
    cross = run_with_threads(1, lite_ckpt, tmp_path / "t2", [])
    assert cross["pixels"] == two["pixels"]


def test_alone_or_in_a_batch_gives_identical_bytes_and_pixels(lite_ckpt, photos, tmp_path):
    from typer.testing import CliRunner

    from texpress.cli import build_app

    app = build_app()
    runner = CliRunner()
    batch_in = tmp_path / "batch"
    batch_in.mkdir()
    for p in photos[:5]:
        (batch_in / p.name).write_bytes(p.read_bytes())
    alone = photos[3]
    r1 = runner.invoke(app, ["compress", str(batch_in), "-o", str(tmp_path / "b"), "-m", str(lite_ckpt)])
    r2 = runner.invoke(app, ["compress", str(alone), "-o", str(tmp_path / "a"), "-m", str(lite_ckpt)])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    name = Path(alone.name).with_suffix(".tpx").name
    assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    r3 = runner.invoke(app, ["decompress", str(tmp_path / "b"), "-o", str(tmp_path / "bd"), "-m", str(lite_ckpt)])
    r4 = runner.invoke(app, ["decompress", str(tmp_path / "a" / name), "-o", str(tmp_path / "ad"), "-m", str(lite_ckpt)])
    assert r3.exit_code == 0 and r4.exit_code == 0, r3.output + r4.output
    png = Path(name).with_suffix(".png").name
    assert np.array_equal(np.asarray(Image.open(tmp_path / "bd" / png)), np.asarray(Image.open(tmp_path / "ad" / png)))
