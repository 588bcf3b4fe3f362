import torch
import pytest

from texpress.codec.checkpoint import build_model, fingerprint, load_model, read_checkpoint, save_checkpoint
from texpress.codec.config import get_preset
from texpress.errors import CheckpointError


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_save_load_keeps_weights_cdfs_and_fingerprint(tmp_path, suffix):
    model = build_model(get_preset("lite"), seed=3)
    fp = save_checkpoint(model, tmp_path / f"m{suffix}", meta={"note": "x"})
    loaded = load_model(tmp_path / f"m{suffix}")
    assert fingerprint(loaded) == fp
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert loaded.entropy_bottleneck._quantized_cdf.numel() > 0  # update() ran and was stored
    assert read_checkpoint(tmp_path / f"m{suffix}")["meta"] == {"note": "x"}


def test_torch_checkpoint_loads_with_weights_only(tmp_path):
    save_checkpoint(build_model(get_preset("lite"), seed=0), tmp_path / "m.ckpt")
    payload = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert payload["format"] == "texpress-checkpoint" and isinstance(payload["config"], dict)


def test_fingerprint_sees_any_weight_change():
    model = build_model(get_preset("lite"), seed=0)
    model.update(force=True)
    before = fingerprint(model)
    with torch.no_grad():
        model.generator.rgb_conv.bias[0] += 1e-6
    assert fingerprint(model) != before


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable texpress checkpoint"):
        load_model(tmp_path / "junk.ckpt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.ckpt")  # a pickled module is refused
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "pickled.ckpt")
    torch.save({"format": "something-else"}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a texpress checkpoint"):
        load_model(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.ckpt")
