"""Bad input to every Prefect flow parameter: each field of each flow's parameter model refuses a bad
value with one reason line that names it, before anything runs; a path that does not exist fails the
run with one line before params.yaml or any output is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError

import flows.ingest
from flows.bulk import bulk_compress, bulk_decompress
from flows.common import REPO_ENV, StageFailed
from flows.ingest import ingest
from flows.nightly import nightly
from flows.promote import promote
from flows.train import check_ray, train

ROOT = Path(__file__).resolve().parents[2]
FLOWS = {"ingest": ingest, "train": train, "promote": promote, "bulk-compress": bulk_compress,
         "bulk-decompress": bulk_decompress, "nightly": nightly}

# flow -> field -> bad values (what a UI form or `prefect deployment run --param` could send)
BAD = {
    "ingest": {
        "sources": [[], "samples", [""], [3]],
        "endpoint_url": ["localhost:9000", 9000],
        "min_side": [0, "big"],
        "val_frac": [1.5, -0.1],
        "test_frac": [2, "half"],
        "push": ["maybe"],
    },
    "train": {
        "preset": ["huge", 1],
        "init_from": ["", 5],
        "rd_steps": [-1, 1.5],
        "gan_steps": [-5, "many"],
        "workers": [0],
        "gpus_per_worker": [-1, "one"],
        "patch_size": [8],
        "batch_size": [0],
        "ray_address": ["auto", "ray://head", "http://head:10001", 10001],
        "register_model": ["maybe"],
        "model_name": ["", 7],
        "slim_ratio": [0, 1.0, "half"],
        "slim_steps": [0, 2.5],
        "register_slim": ["maybe"],
        "extra_params": [["train.val_every", 50], "train.val_every=50"],
        "force": ["perhaps"],
    },
    "promote": {
        "name": ["", 3],
        "version": ["latest", "0", "-1", 1.5],
        "dry_run": ["maybe"],
        "max_images": [0, "all"],
    },
    "bulk-compress": {
        "sources": [[], [""], "data/raw"],
        "dest": ["", None],
        "model": ["", 3],
        "workers": [0],
        "gpus_per_worker": [-0.5],
        "batch_size": [0, "big"],
        "dest_format": ["tar", 1],
        "endpoint_url": ["s3.example.com"],
        "effort": [-1, 4, "max"],
        "lam": [0, -0.5, "high"],
        "quality": [-1, 101, "high"],
    },
    "nightly": {
        "ingest": [{"sources": []}, "samples"],
        "train": [{"workers": 0}, {"rd_stepz": 3}],
        "promote": [{"max_images": 0}],
        "compress": [{"dest_format": "zip"}],
    },
}
BAD["bulk-decompress"] = BAD["bulk-compress"]
CASES = [(flow, field, value) for flow, fields in BAD.items() for field, values in fields.items() for value in values]


def reason_lines(flow_name: str, params: dict) -> list[str]:
    """What a deployment run reports for these parameters: Prefect validates them against the model
    before the flow starts (as the UI's form does with the model's JSON schema)."""
    with pytest.raises(ParameterTypeError) as info:
        FLOWS[flow_name].validate_parameters({"params": params})
    return [line for line in str(info.value).splitlines() if line.startswith(" - ")]


def test_every_field_of_every_flow_has_bad_values():
    for name in FLOWS:
        assert set(_model(name).model_fields) == set(BAD[name]), name


def _model(flow_name: str):
    """The flow's parameter model (the type of its default `params`)."""
    import inspect

    return type(inspect.signature(FLOWS[flow_name].fn).parameters["params"].default)


@pytest.mark.parametrize("flow_name,field,value", CASES, ids=[f"{f}-{k}-{v!r}" for f, k, v in CASES])
def test_a_bad_value_is_refused_with_one_line_naming_the_field(flow_name, field, value):
    lines = reason_lines(flow_name, {field: value})
    assert len(lines) == 1, lines
    assert lines[0].startswith(f" - params.{field}"), lines


@pytest.mark.parametrize("flow_name", list(FLOWS))
def test_an_unknown_field_is_refused_not_ignored(flow_name):
    assert reason_lines(flow_name, {"wokers": 2}) == [" - params.wokers: Extra inputs are not permitted"]


def test_split_fractions_that_leave_no_training_images_are_refused():
    lines = reason_lines("ingest", {"val_frac": 0.6, "test_frac": 0.5})
    assert len(lines) == 1 and "val_frac + test_frac must be below 1" in lines[0], lines


def test_an_unreachable_ray_cluster_is_one_line_naming_it():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StageFailed, match=rf"^Ray cluster ray://127.0.0.1:{port} not reachable: .+$"):
        check_ray.fn(f"ray://127.0.0.1:{port}")  # the task body; the task itself retries


# Runs that get past validation but name something that does not exist: they fail with one line
# before params.yaml changes or any output appears.
RUNTIME = {
    "ingest: missing folder": (ingest, {"sources": ["samples", "incoming/nope"]}, "incoming/nope: source not found"),
    "ingest: missing file:// source": (ingest, {"sources": ["file:///nonexistent/x.tar"]}, "/nonexistent/x.tar"),
    "train: missing warm-start checkpoint": (train, {"init_from": "models/nope.ckpt", "rd_steps": 5},
                                             "init_from models/nope.ckpt: no such"),
    "train: unknown params.yaml key": (train, {"rd_steps": 5, "extra_params": {"train.val_evry": 5}}, "val_evry"),
    "bulk-compress: missing source": (bulk_compress, {"sources": ["nope"], "dest": "out"}, "source nope: no such"),
    "bulk-compress: missing checkpoint": (bulk_compress, {"sources": ["params.yaml"], "dest": "out",
                                                          "model": "nope.ckpt"}, "model nope.ckpt: no such"),
    "bulk-decompress: missing store": (bulk_decompress, {"sources": ["tpx"], "dest": "out"}, "source tpx: no such"),
    "promote: no model store": (promote, {"name": "texpress-lite"}, "mlflow.db"),
    "nightly: missing ingest source": (nightly, {"ingest": {"sources": ["nope"]}}, "nope: source not found"),
}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def files_under(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(RUNTIME))
def test_a_missing_path_fails_the_run_with_one_line_and_writes_nothing(case, harness, tmp_path, monkeypatch):
    flow, params, fragment = RUNTIME[case]
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    monkeypatch.setenv(REPO_ENV, str(repo))
    # ingest retries an unreachable source (a mount may come back; test_deployments checks the retries):
    # the same check without the waits
    monkeypatch.setattr(flows.ingest, "check_source", flows.ingest.check_source.with_options(retries=0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo}/mlflow.db")
    before = files_under(repo)
    model = _model(flow.name)
    state = flow(model(**params), return_state=True)
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    if not isinstance(exc, BaseException):  # a sub-flow failed: nightly's state holds the sub-flow's
        exc = next(s.result(raise_on_failure=False) for s in exc if s.is_failed())
    message = str(exc)
    assert "\n" not in message and fragment in message, message
    assert files_under(repo) == before  # params.yaml unchanged, no output, no store
