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


CROSS = r"""
import hashlib, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from PIL import Image
from texpress.codec.api import Codec
ckpt, tpx, image = sys.argv[1:4]
codec = Codec.from_checkpoint(ckpt)
if image != "-":
    open(tpx, "wb").write(codec.encode(codec.load(Image.open(image).convert("RGB").resize((300, 200))), tile=128))
print(torch.get_num_threads(), hashlib.sha256(np.asarray(codec.decompress(open(tpx, "rb").read())).tobytes()).hexdigest())
"""


def test_tiled_stream_encoded_in_one_process_decodes_identically_in_another(lite_ckpt, photos, tmp_path):
    """Encode (2 threads) in one process, decode (1 thread) in another: the same pixels."""
    tpx = tmp_path / "tiled.tpx"

    def run(threads: int, image: str) -> list[str]:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-c", CROSS, str(lite_ckpt), str(tpx), image],
                              env=env, capture_output=True, text=True, check=True)
        return proc.stdout.split()

    encoder_side = run(2, str(photos[4]))
    decoder_side = run(1, "-")
    assert (encoder_side[0], decoder_side[0]) == ("2", "1")
    assert decoder_side[1] == encoder_side[1]


def test_gpu_encode_decodes_the_same_latents_on_the_cpu(lite_ckpt, photos):
    """Where CUDA is available: a stream encoded on the GPU decodes on the CPU to the latents the GPU
    decoder gets (means and scales come from the float64 hyper-synthesis on the 2^-10 grid)."""
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from texpress.codec.api import Codec
    from texpress.codec.checkpoint import load_model

    gpu = Codec(load_model(lite_ckpt).cuda())
    cpu = Codec.from_checkpoint(lite_ckpt)
    for path in photos[:3]:
        image = gpu.load(Image.open(path).convert("RGB").resize((320, 240)))
        for tile in (None, 128):
            data = gpu.encode(image, tile=tile)
            assert torch.equal(gpu.open(data).latent().cpu(), cpu.open(data).latent())
            a = np.asarray(gpu.decompress(data)).astype(int)
            b = np.asarray(cpu.decompress(data)).astype(int)
            assert np.abs(a - b).max() <= 1


def test_coding_runs_under_the_fixed_thread_count_and_restores_it(lite_ckpt, photos):
    """oneDNN splits a conv's sums by thread count (on an 8 x 8 latent, 1 and 2 threads differ in the
    last bit), so the encoder, hyper-synthesis and generator run under CODING_THREADS whatever the
    process uses, and the process gets its own count back."""
    import torch

    from texpress.codec.api import Codec
    from texpress.codec.threads import CODING_THREADS

    codec = Codec.from_checkpoint(lite_ckpt)
    seen = []
    for part in (codec.model.encoder, codec.model.h_s, codec.model.generator):
        part.register_forward_pre_hook(lambda mod, args: seen.append(torch.get_num_threads()))
    rgb = np.asarray(Image.open(photos[0]).convert("RGB"))[:128, :128]
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        pixels = {np.asarray(codec.decompress(codec.compress(rgb))).tobytes()}
        assert torch.get_num_threads() == 3
        torch.set_num_threads(2)
        pixels.add(np.asarray(codec.decompress(codec.compress(rgb))).tobytes())
    finally:
        torch.set_num_threads(before)
    assert len(pixels) == 1
    assert seen and set(seen) == {CODING_THREADS}
