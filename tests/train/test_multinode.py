"""Two Ray nodes on this machine (ray.cluster_utils.Cluster, 1 CPU each), one training worker on each:
both ranks train on their own part of the data and one model results."""

from __future__ import annotations

import math
import os
import shutil

import pytest

from texpress.codec.checkpoint import fingerprint, load_model
from texpress.train.ray_driver import run_training

from .conftest import ray_temp_dir, small_configs

pytestmark = pytest.mark.heavy


@pytest.fixture
def two_node_cluster(monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    temp = ray_temp_dir()
    # Cluster writes its address to <RAY_TMPDIR>/ray/ray_current_cluster: keep it (and both nodes'
    # sessions) in our own folder, out of the machine-wide /tmp/ray that other users' ray.init() reads
    monkeypatch.setenv("RAY_TMPDIR", temp)
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_config=ray.LoggingConfig(log_level="ERROR"))
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_one_worker_per_node_one_model(two_node_cluster, shards, tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    cfg, loader_cfg = small_configs(rd_steps=4, gan_steps=2, checkpoint_every=3, val_every=100,
                                    storage_path=str(tmp_path / "ray"))
    outcome = run_training(cfg, loader_cfg, shards, tmp_path / "out", tracking_dir=tmp_path)
    m = outcome.metrics
    ranks = m["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["node_id"] for r in ranks} == set(nodes)  # one worker on each node
    assert all(r["steps_run"] == 6 and r["samples"] == 6 * loader_cfg.batch_size for r in ranks)
    assert m["identical_models"] and len({r["fingerprint"] for r in ranks}) == 1  # DDP kept them in step
    assert math.isfinite(m["val_bpp"]) and math.isfinite(m["train_loss_rd"])
    model = load_model(tmp_path / "out" / "model.ckpt")
    assert fingerprint(model) == m["model_fingerprint"]
