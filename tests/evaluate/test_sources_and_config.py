"""Image listing (files, folders, tar shards), cropping, and the evaluate config."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from texpress.errors import ConfigError
from texpress.evaluate.config import EvalConfig, parse_baselines
from texpress.evaluate.sources import centre_crop, list_images

ROOT = Path(__file__).resolve().parents[2]


def write_shard(path: Path, files: dict[str, Path]) -> None:
    """A shard like the dataset's: <key>.<ext> holding the original bytes, plus <key>.json."""
    with tarfile.open(path, "w") as tar:
        for key, src in files.items():
            for name, data in ((f"{key}{src.suffix}", src.read_bytes()), (f"{key}.json", json.dumps({"key": key}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_lists_files_folders_and_shards(tmp_path, crop_files):
    folder = tmp_path / "split"
    folder.mkdir()
    write_shard(folder / "shard-000000.tar", {"astronaut-0001": crop_files[0], "coffee-0002": crop_files[1]})
    (folder / "manifest.json").write_text("{}")
    items, problems = list_images([folder, crop_files[2], crop_files[2], tmp_path / "missing.png"])
    assert [i.name for i in items] == ["shard-000000.tar/astronaut-0001.png", "shard-000000.tar/coffee-0002.png",
                                       "gravel.png", "gravel.png#2"]
    assert problems == [(str(tmp_path / "missing.png"), "no such file or directory")]
    from texpress.codec.imageio import load_image

    assert np.array_equal(items[0].read(), load_image(crop_files[0]).rgb)


def test_every_image_extension_a_dataset_shard_uses_is_listed(tmp_path, crop_files):
    from PIL import Image

    from texpress.data.validate import IMAGE_EXTS

    ico = tmp_path / "x.ico"
    Image.open(crop_files[0]).convert("RGB").resize((64, 64)).save(ico)
    write_shard(tmp_path / "shard-000000.tar", {"icon-0001": ico})
    items, problems = list_images([tmp_path / "shard-000000.tar"])
    assert [i.name for i in items] == ["shard-000000.tar/icon-0001.ico"] and not problems
    assert items[0].read().shape == (64, 64, 3)
    names = [f"k{i}.{ext}" for i, ext in enumerate(IMAGE_EXTS)]
    from texpress.evaluate.sources import _is_image_name

    assert all(_is_image_name(n) for n in names)


def test_an_unreadable_image_fails_when_read_not_when_listed(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    items, problems = list_images([bad])
    assert not problems
    from texpress.errors import InputError

    with pytest.raises(InputError):
        items[0].read()


def test_centre_crop_keeps_short_sides():
    a = np.zeros((100, 60, 3), np.uint8)
    a[50, 30] = 255
    out = centre_crop(a, (40, 200))
    assert out.shape == (100, 40, 3) and out[50, 20, 0] == 255
    assert centre_crop(a, None) is a


def test_config_from_params_yaml_section():
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]
    cfg = EvalConfig.from_dict(section)
    assert set(cfg.baselines) == {"jpeg", "webp", "avif", "jpeg2000", "heic", "jxl"}
    assert EvalConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("section, match", [
    ({"baselines": ["jpeg", "bpg"]}, "unknown baseline"),
    ({"colour": True}, "unknown evaluate keys"),
    ({"qualities": {"jpeg": []}}, "empty"),
    ({"crop": [8, 8]}, "crop"),
    ({"texture": {"periods": [1]}}, "periods"),
    ({"texture": {"bands": 3}}, "unknown evaluate.texture keys"),
    ({"figure": {"crop": 4}}, "figure.crop"),
])
def test_config_errors_are_one_line(section, match):
    with pytest.raises(ConfigError, match=match) as info:
        EvalConfig.from_dict(section)
    assert "\n" not in str(info.value)


def test_parse_baselines():
    assert parse_baselines("jpeg, webp") == ("jpeg", "webp")
    assert parse_baselines("none") == ()
    assert len(parse_baselines("all")) == 6
