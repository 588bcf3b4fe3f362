"""The DVC slim stage's script on a real shard folder (the stage as `dvc repro slim` runs it), and its
params section."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from texpress.codec.checkpoint import build_model, load_model, read_checkpoint, save_checkpoint
from texpress.codec.config import get_preset
from texpress.errors import ConfigError
from texpress.slim.config import SlimConfig
from texpress.train.distill import decode_compatible

ROOT = Path(__file__).resolve().parents[2]


def test_params_section_is_the_config():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["slim"]
    assert SlimConfig.from_dict(params) == SlimConfig()
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["slim"]
    assert "models/model.ckpt" in stage["deps"] and stage["outs"] == ["models/slim/model.ckpt"]


@pytest.mark.parametrize("changes", [{"ratio": 1.2}, {"part": "hyper"}, {"steps": 0}, {"criterion": "taylor"},
                                     {"lr": 0}, {"typo": 1}])
def test_bad_params(changes):
    with pytest.raises(ConfigError):
        SlimConfig.from_dict(changes)


def test_slim_stage_script(tmp_path, monkeypatch):
    from texpress.data.config import ShardConfig
    from texpress.data.ingest import ingest
    from texpress.samples import sample_photos

    photos = sample_photos()
    if len(photos) < 8:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    ingest([str(p) for p in photos], tmp_path / "data" / "shards", ShardConfig(min_side=64, val_frac=0.2, test_frac=0.1))
    (tmp_path / "models").mkdir()
    save_checkpoint(build_model(get_preset("lite"), seed=0), tmp_path / "models" / "model.ckpt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["slim"]["steps"] = 3
    params["train"].update(val_images=1, log_every=1)
    params["loader"].update(patch_size=64, batch_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    spec = importlib.util.spec_from_file_location("slim_stage", ROOT / "pipelines" / "slim.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    assert stage.main() == 0
    model = load_model(tmp_path / "models" / "slim" / "model.ckpt")
    assert model.config.gen_widths == (72, 48, 36, 24, 3) and model.config.up_kernel == 5  # a quarter pruned
    meta = read_checkpoint(tmp_path / "models" / "slim" / "model.ckpt")["meta"]
    assert meta["slim"]["decode_compatible"] is True and meta["slim"]["pruned"]["ratio"] == 0.25
    assert decode_compatible(model, load_model(tmp_path / "models" / "model.ckpt"))
    assert (tmp_path / "models" / "slim" / "train_metrics.json").is_file()
