"""Champion/challenger promotion against a real MLflow sqlite store: floors without a champion, a
better candidate takes over, a worse one (a damaged copy) is refused and leaves the champion alone,
a dry run moves nothing, every decision is logged, and two racing promotions leave one champion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml
from mlflow.tracking import MlflowClient

from texpress.registry.promote import promote
from texpress.registry.register import register_checkpoint


def aliases(client, name) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def decisions(client, store) -> list[dict]:
    """decision.json of every promotion run, oldest first."""
    exp = client.get_experiment_by_name("texpress-registry")
    runs = client.search_runs([exp.experiment_id], "tags.`texpress.kind` = 'promotion'", order_by=["start_time ASC"])
    out = []
    for run in runs:
        path = client.download_artifacts(run.info.run_id, "decision.json")
        out.append(json.loads(open(path).read()) | {"tags": run.data.tags})
    return out


def test_floors_takeover_refusal_and_dry_run(store, checkpoints, gate_cfg):
    client = MlflowClient(store, store)
    worse = register_checkpoint(checkpoints["damaged"], "tx", tracking_uri=store)
    better = register_checkpoint(checkpoints["good"], "tx", tracking_uri=store)

    # no champion: the damaged copy is below the PSNR floor, so it only becomes challenger
    d = promote("tx", worse.version, tracking_uri=store, cfg=gate_cfg)
    assert not d.promoted and d.champion is None and [c.name for c in d.checks] == ["psnr"]
    assert aliases(client, "tx") == {"challenger": worse.version}

    # with the floors off it is the first champion (nothing to compare with)
    off = replace(gate_cfg, gate=replace(gate_cfg.gate, floor_min_psnr=None))
    assert promote("tx", worse.version, tracking_uri=store, cfg=off).promoted
    assert aliases(client, "tx") == {"champion": worse.version}

    # the trained model beats it on the same images: champion moves, the loser is challenger
    d = promote("tx", better.version, tracking_uri=store, cfg=gate_cfg)
    assert d.promoted and d.champion == worse.version, d.to_dict()
    assert aliases(client, "tx") == {"champion": better.version, "challenger": worse.version}
    tags = client.get_model_version("tx", better.version).tags
    assert tags["promotion.outcome"] == "champion" and tags["promotion.against"] == worse.version
    assert tags["promotion.run_id"] == d.run_id
    assert client.get_model_version("tx", worse.version).tags["promotion.outcome"] == "challenger"
    measured = d.measurements["curves"]
    assert measured["candidate"][0]["psnr-rgb"] > measured["champion"][0]["psnr-rgb"]

    # a dry run of the damaged copy: refused, logged, nothing moved or tagged
    before = client.get_model_version("tx", worse.version).tags
    d = promote("tx", worse.version, tracking_uri=store, cfg=gate_cfg, dry_run=True)
    assert not d.promoted and d.dry_run and d.champion == better.version
    assert not next(c for c in d.checks if c.name == "rate_delta_psnr-rgb").passed
    assert aliases(client, "tx") == {"champion": better.version, "challenger": worse.version}
    assert client.get_model_version("tx", worse.version).tags == before

    # for real: refused, the champion stays
    d = promote("tx", worse.version, tracking_uri=store, cfg=gate_cfg)
    assert not d.promoted
    assert aliases(client, "tx") == {"champion": better.version, "challenger": worse.version}
    assert client.get_model_version("tx", worse.version).tags["promotion.run_id"] == d.run_id

    logged = decisions(client, store)
    assert [(x["candidate"], x["promoted"], x["dry_run"]) for x in logged] == [
        (worse.version, False, False), (worse.version, True, False), (better.version, True, False),
        (worse.version, False, True), (worse.version, False, False)]
    assert logged[3]["tags"]["promotion.outcome"] == "dry-run"
    assert logged[2]["measurements"]["fingerprints"]["candidate"] == better.fingerprint
    run = client.get_run(logged[2]["run_id"])
    assert run.data.metrics["gate/rate_delta_psnr-rgb"] <= 0.0


@pytest.mark.heavy
def test_racing_promotions_leave_one_champion(store, checkpoints, gate_cfg, tmp_path):
    """Both candidates pass the floors; the per-name lock makes the second compare against the first's
    result, so whichever runs first, the trained model ends as champion and the damaged as challenger."""
    client = MlflowClient(store, store)
    worse = register_checkpoint(checkpoints["damaged"], "race", tracking_uri=store)
    better = register_checkpoint(checkpoints["good"], "race", tracking_uri=store)
    params = tmp_path / "params.yaml"
    section = gate_cfg.to_dict()
    section["gate"]["floor_min_psnr"] = None
    params.write_text(yaml.safe_dump({"registry": section}))
    env = {"MLFLOW_TRACKING_URI": store, "COLUMNS": "200"}
    procs = [subprocess.Popen([sys.executable, "-m", "texpress.cli", "registry", "promote", "race", "--candidate", v,
                               "--params", str(params)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env}) for v in (worse.version, better.version)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in err, out + err
    assert aliases(client, "race") == {"champion": better.version, "challenger": worse.version}
    logged = decisions(client, store)
    assert len(logged) == 2
    first, second = logged
    assert first["champion"] is None and first["promoted"]  # the first had no champion to beat
    assert second["champion"] == first["candidate"]  # the second saw the first's result
    assert not client.search_registered_models("name = 'race.promotion-lock'")
