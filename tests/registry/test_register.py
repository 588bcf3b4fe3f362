"""Registration into a real MLflow sqlite store, model-version tags, models:/ references and the
download cache, `registry pull` and `registry list`, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from texpress.codec.checkpoint import load_model, read_checkpoint
from texpress.codec.complexity import measure
from texpress.evaluate.config import EvalConfig, ModelSpec
from texpress.evaluate.run import run_eval
from texpress.registry.refs import resolve_checkpoint
from texpress.registry.register import register_checkpoint, register_run
from texpress.registry.store import RegistryError

from .conftest import texpress


def test_register_tags_and_idempotence(store, checkpoints, images, tmp_path):
    ckpt = checkpoints["good"]
    summary = run_eval([str(images)], [ModelSpec.parse(str(ckpt))], EvalConfig(baselines=("jpeg",)),
                       tmp_path / "ev").summary
    r = register_checkpoint(ckpt, tracking_uri=store, eval_summary=summary)
    assert (r.name, r.version, r.created) == ("texpress-lite", "1", True)
    client = MlflowClient(store, store)
    tags = client.get_model_version(r.name, r.version).tags
    payload = read_checkpoint(ckpt)
    cx = measure(load_model(ckpt))
    assert tags["texpress.fingerprint"] == payload["fingerprint"] == r.fingerprint
    assert json.loads(tags["texpress.config"]) == payload["config"]
    assert float(tags["texpress.decoder_kmac_per_px"]) == pytest.approx(cx.decoder_kmac_per_px, rel=1e-5)
    assert int(tags["texpress.encoder_params"]) == cx.encoder_params
    assert tags["texpress.preset"] == "lite" and tags["texpress.steps"] == "200"
    for key in ("texpress.training_run", "texpress.data_version", "texpress.git_commit"):
        assert key in tags
    point = summary["curves"]["texpress"]["points"][0]
    assert float(tags["eval.bpp"]) == pytest.approx(point["bpp"], rel=1e-5)
    assert float(tags["eval.psnr-rgb"]) == pytest.approx(point["psnr-rgb"], rel=1e-5)
    assert "eval.texture-distance" in tags and tags["eval.images"] == "2"
    # the same checkpoint again: the same version, no second one
    again = register_checkpoint(ckpt, tracking_uri=store)
    assert (again.version, again.created) == ("1", False)
    assert len(client.search_model_versions("name = 'texpress-lite'")) == 1
    # a summary of another model is refused before anything is written
    with pytest.raises(Exception, match="no curve of model"):
        register_checkpoint(checkpoints["damaged"], tracking_uri=store, eval_summary=summary)
    assert len(client.search_model_versions("name = 'texpress-lite'")) == 1


def test_register_a_training_run(store, checkpoints, tmp_path):
    client = MlflowClient(store, store)
    exp = client.create_experiment("texpress", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    client.log_artifact(run, str(checkpoints["damaged"]), "model")  # as the train stage does, under another name
    with pytest.raises(RegistryError, match="has no checkpoint"):
        register_run(run, "texpress-damaged", tracking_uri=store)
    staged = tmp_path / "stage" / "model.ckpt"
    staged.parent.mkdir()
    shutil.copyfile(checkpoints["damaged"], staged)
    client.log_artifact(run, str(staged), "model")
    r = register_run(run, "texpress-damaged", tracking_uri=store)
    mv = client.get_model_version("texpress-damaged", r.version)
    assert mv.run_id == run and mv.tags["texpress.training_run"] == run
    assert "texpress_model/MLmodel" in {f.path for f in client.list_artifacts(run, "texpress_model")}
    with pytest.raises(RegistryError, match="not found"):
        register_run("0" * 32, tracking_uri=store)


def test_models_uris_resolve_once_into_the_cache(store, checkpoints, tmp_path):
    r = register_checkpoint(checkpoints["good"], tracking_uri=store)
    MlflowClient(store, store).set_registered_model_alias(r.name, "champion", r.version)
    by_version = resolve_checkpoint(f"models:/{r.name}/{r.version}", store)
    assert read_checkpoint(by_version)["fingerprint"] == r.fingerprint
    assert r.fingerprint in by_version.parts and by_version.is_relative_to(tmp_path / "cache")
    shutil.rmtree(tmp_path / "mlartifacts")  # the store's artifacts are gone: the cache serves the file
    assert resolve_checkpoint(f"models:/{r.name}@champion", store) == by_version
    assert resolve_checkpoint(str(checkpoints["good"])) == checkpoints["good"]  # a plain path passes through
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(RegistryError):  # nothing to download any more: one error, no half file in the cache
        resolve_checkpoint(f"models:/{r.name}@champion", store)
    assert not list((tmp_path / "cache").rglob("model.*"))


def test_corrupt_artifact_is_refused(store, checkpoints, tmp_path):
    r = register_checkpoint(checkpoints["good"], tracking_uri=store)
    stored = next((tmp_path / "mlartifacts").rglob("artifacts/model.ckpt"))
    stored.write_bytes(stored.read_bytes()[:1000])
    with pytest.raises(RegistryError, match="corrupt"):
        resolve_checkpoint(f"models:/{r.name}/{r.version}", store)
    assert not list((tmp_path / "cache").rglob("model.*"))


def test_cli_register_pull_list_compress_and_errors(store, checkpoints, images, tmp_path):
    env = {"MLFLOW_TRACKING_URI": store}
    out = texpress("registry", "register", "--checkpoint", str(checkpoints["good"]), "--name", "tx", env=env).stdout
    assert "registered tx version 1" in out
    client = MlflowClient(store, store)
    client.set_registered_model_alias("tx", "champion", "1")
    texpress("registry", "pull", "tx@champion", "-o", str(tmp_path / "pulled.ckpt"), env=env)
    assert (tmp_path / "pulled.ckpt").read_bytes() == checkpoints["good"].read_bytes()
    texpress("registry", "pull", "models:/tx/1", "-o", str(tmp_path / "pulled.safetensors"), env=env)
    assert read_checkpoint(tmp_path / "pulled.safetensors")["fingerprint"] == read_checkpoint(
        checkpoints["good"])["fingerprint"]
    listing = texpress("registry", "list", "tx", env=env).stdout
    assert "@champion" in listing and read_checkpoint(checkpoints["good"])["fingerprint"][:12] in listing
    # compress with the alias, decompress with the version: the same model
    texpress("compress", str(images), "-o", str(tmp_path / "tpx"), "-m", "models:/tx@champion", env=env)
    texpress("decompress", str(tmp_path / "tpx"), "-o", str(tmp_path / "png"), "-m", "models:/tx/1", env=env)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["astronaut.png", "coffee.png"]
    for args, message in [
        (("registry", "list", "nope"), "no registered model 'nope'"),
        (("registry", "pull", "tx@nope", "-o", str(tmp_path / "x.ckpt")), "has no alias @nope"),
        (("compress", str(images), "-o", str(tmp_path / "t2"), "-m", "models:/tx/9"), "has no version 9"),
    ]:
        proc = texpress(*args, check_rc=2, env=env)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "x.ckpt").exists()
    assert {k: str(v) for k, v in client.get_registered_model("tx").aliases.items()} == {"champion": "1"}
    proc = texpress("registry", "list", check_rc=2, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert "unreachable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
