"""Shared set-up of the training tests: a small shard folder made from the bundled sample photos,
a local Ray (2 CPUs, no dashboard, its own short temp dir) and small training configs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from texpress.data.config import LoaderConfig
from texpress.train.config import TrainConfig


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """7 train, 2 val, 2 test images (the content-hash split of the 11 sample photos)."""
    from texpress.data.config import ShardConfig
    from texpress.data.ingest import ingest
    from texpress.samples import sample_photos

    photos = sample_photos()
    if len(photos) < 8:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    out = tmp_path_factory.mktemp("train-data") / "shards"
    ingest([str(p) for p in photos], out, ShardConfig(min_side=64, val_frac=0.2, test_frac=0.1))
    return out


def ray_temp_dir() -> str:
    return tempfile.mkdtemp(prefix="txt-", dir="/tmp")  # short: Ray's socket paths have a length limit


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for the module; run_training uses it instead of starting its own."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    temp = ray_temp_dir()
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp,
                 logging_config=ray.LoggingConfig(log_level="ERROR"))
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def small_configs(**train_changes) -> tuple[TrainConfig, LoaderConfig]:
    """lite preset, 64x64 patches, batch 2, frequent checkpoints and validation."""
    train = dict(preset="lite", rd_steps=6, gan_steps=4, workers=2, checkpoint_every=4, val_every=5, log_every=2,
                 val_images=2, grid_images=2, max_failures=2)
    train.update(train_changes)
    return TrainConfig(**train), LoaderConfig(patch_size=64, batch_size=2, num_workers=0, batches_per_epoch=20,
                                              val_max_side=192)
