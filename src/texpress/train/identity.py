"""The identity of a training run: a hash of what determines the trained model, so that the same
command resumes its own run (the Ray run name, the single-process trainer's checkpoints) and a run
with other settings or data is never resumed by mistake."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from texpress.data.config import LoaderConfig
from texpress.train.config import TrainConfig

# train: settings that change where a run is stored, logged or checkpointed, not the model it trains
NOT_THE_MODEL = ("storage_path", "experiment", "max_failures", "log_every", "keep_checkpoints", "init_from",
                 "cpus_per_worker", "gpus_per_worker", "checkpoint_every", "val_every", "val_images", "grid_images")


def run_identity(cfg: TrainConfig, loader_cfg: LoaderConfig, data: str, init: str | None, **more: Any) -> str:
    """16 hex digits over the training and loader settings, the data version, the warm start (its
    fingerprint, else its path) and any `more` that shapes the model (the single-process trainer's amp)."""
    train = {k: v for k, v in cfg.to_dict().items() if k not in NOT_THE_MODEL}
    blob = json.dumps({"train": train, "loader": loader_cfg.to_dict(), "data": data, "init": init, **more},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
