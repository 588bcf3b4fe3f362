from pathlib import Path

import pytest
from PIL import Image

from texpress.codec.checkpoint import build_model, save_checkpoint
from texpress.codec.config import ModelConfig, get_preset
from texpress.samples import sample_photos

# a miniature lite-vr: GDN transforms, 5x5 deconvs, the checkerboard context and three rate levels
TINY_VR = get_preset("lite-vr").replace(enc_widths=(3, 16, 16, 16, 16), latent_channels=16,
                                        gen_widths=(16, 16, 12, 8, 3), hyper_channels=8,
                                        rate_lambdas=(2.0, 1.0, 0.5))
# a miniature HiFiC: ChannelNorm, a residual trunk, an output conv
TINY_HIFIC = ModelConfig(enc_widths=(8, 16, 16, 16, 16), latent_channels=12, gen_widths=(16, 16, 12, 8, 8),
                         res_blocks=2, hyper_channels=8)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "tiny-vr.ckpt"
    save_checkpoint(build_model(TINY_VR, seed=3), path)
    return path


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Three 128x96 crops of the bundled sample photos."""
    folder = tmp_path_factory.mktemp("photos")
    for p in sample_photos()[:3]:
        with Image.open(p) as im:
            im.convert("RGB").crop((0, 0, 128, 96)).save(folder / f"{p.stem}.png")
    return folder
