"""The prepare stage's gathering, and the params.yaml sections' config classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from texpress.data.config import LoaderConfig, PrepareConfig, ShardConfig
from texpress.params import load_params
from texpress.data.prepare import gather
from texpress.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[2]


def test_gather_copies_folders_and_archives_unchanged(tmp_path, photo_dir, good_tar):
    (photo_dir / "link.jpg").symlink_to(photo_dir / "img0.jpg")
    warnings: list[str] = []
    counts = gather(PrepareConfig(sources=(str(photo_dir), str(good_tar))), tmp_path / "raw", warn=warnings.append)
    assert counts == {"photos": 7, "good.tar.gz": 1}
    assert (tmp_path / "raw/good.tar.gz").read_bytes() == good_tar.read_bytes()
    assert (tmp_path / "raw/photos/sub/img4.png").read_bytes() == (photo_dir / "sub/img4.png").read_bytes()
    assert not (tmp_path / "raw/photos/link.jpg").exists() and any("link.jpg" in w for w in warnings)
    # a second gather replaces the folder as a whole
    gather(PrepareConfig(sources=(str(good_tar),)), tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["good.tar.gz"]


def test_gather_refuses_missing_sources_and_name_clashes(tmp_path, photo_dir):
    with pytest.raises(InputError, match="no such file"):
        gather(PrepareConfig(sources=(str(tmp_path / "nope"),)), tmp_path / "raw")
    other = tmp_path / "elsewhere" / "photos"
    other.mkdir(parents=True)
    with pytest.raises(ConfigError, match="photos"):
        gather(PrepareConfig(sources=(str(photo_dir), str(other))), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and not list(tmp_path.glob(".raw.*"))


def test_gather_samples(tmp_path):
    counts = gather(PrepareConfig(), tmp_path / "raw")
    assert counts == {"samples": 11} and len(list((tmp_path / "raw/samples").iterdir())) == 11


def test_params_yaml_sections_map_onto_the_config_classes():
    params = ROOT / "params.yaml"
    assert PrepareConfig.from_dict(load_params(params, "prepare")).sources == ("samples",)
    shard = ShardConfig.from_dict(load_params(params, "shard"))
    loader = LoaderConfig.from_dict(load_params(params, "loader"))
    assert shard.min_side >= loader.patch_size  # so the loader never has to skip an image
    with pytest.raises(ConfigError, match="unknown shard keys: min_sid"):
        ShardConfig.from_dict({"min_sid": 3})
    with pytest.raises(ConfigError):
        ShardConfig(val_frac=0.7, test_frac=0.5)
    with pytest.raises(ConfigError):
        LoaderConfig(patch_size=0)
    with pytest.raises(ConfigError, match="shard: "):  # a value of the wrong type is a config error too
        ShardConfig.from_dict({"min_side": "abc"})
