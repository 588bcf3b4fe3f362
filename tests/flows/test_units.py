"""Fast checks of the flows' pieces: params.yaml overrides, the typed parameters, and, on Prefect's
test harness, the one-line reason of a failed command and the markdown report artifact."""

from __future__ import annotations

import sys

import pytest
import yaml
from pydantic import ValidationError

from texpress.errors import ConfigError
from texpress.params import set_params

from .conftest import ROOT

# `flows` is a top-level folder of the repository: importable here as on the Prefect worker (cwd = root)
from flows.bulk import BulkParams
from flows.common import StageFailed, report, run_command
from flows.ingest import IngestParams
from flows.nightly import NightlyParams
from flows.train import TrainParams


def test_set_params_changes_only_the_named_lines_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    old = set_params(params, {"train.rd_steps": 7, "prepare.sources": ["samples", "s3://bucket/new images"],
                              "evaluate.crop": [64, 64], "loader.patch_size": 128})
    rd_steps = yaml.safe_load(original)["train"]["rd_steps"]
    assert old == {"train.rd_steps": rd_steps, "prepare.sources": ["samples"], "evaluate.crop": None}  # patch_size: same
    changed = [(a, b) for a, b in zip(original.splitlines(), params.read_text().splitlines()) if a != b]
    assert len(changed) == 3 and len(original.splitlines()) == len(params.read_text().splitlines())
    assert all("#" in b for _, b in changed)  # the comment stays on its line
    values = yaml.safe_load(params.read_text())
    assert values["train"]["rd_steps"] == 7 and values["evaluate"]["crop"] == [64, 64]
    assert values["prepare"]["sources"] == ["samples", "s3://bucket/new images"]
    assert values["train"]["lpips_weights"] is None  # nulls stay nulls


def test_set_params_refuses_unknown_keys_and_leaves_an_unchanged_file_alone(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(ConfigError, match="no parameter 'train.rd_stepz'"):
        set_params(params, {"train.rd_stepz": 1})
    before = params.stat().st_mtime_ns
    assert set_params(params, {"train.rd_steps": yaml.safe_load(params.read_text())["train"]["rd_steps"]}) == {}
    assert params.stat().st_mtime_ns == before


def test_every_form_field_maps_onto_an_existing_params_key():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    changes = {**IngestParams(min_side=64, val_frac=0.2, test_frac=0.1).param_changes(),
               **TrainParams(preset="lite", init_from="m.ckpt", rd_steps=1, gan_steps=1, workers=1,
                             gpus_per_worker=0, patch_size=64, batch_size=2, slim_ratio=0.4,
                             slim_steps=5).param_changes()}
    for key in changes:
        section, leaf = key.split(".")
        assert leaf in params[section], key


def test_parameters_are_validated_before_anything_runs():
    with pytest.raises(ValidationError):
        IngestParams(sources=[])
    with pytest.raises(ValidationError):
        TrainParams(preset="huge")
    with pytest.raises(ValidationError):
        TrainParams(workers=0)
    with pytest.raises(ValidationError):
        TrainParams(slim_ratio=1.5)
    with pytest.raises(ValidationError):
        BulkParams(dest_format="zip")
    with pytest.raises(ValidationError):
        NightlyParams(train={"rd_stepz": 3})  # a typo is refused, not ignored
    assert NightlyParams(train={"rd_steps": 3}).train.rd_steps == 3


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_a_failed_command_fails_the_flow_with_its_error_line(harness, tmp_path):
    from prefect import flow

    @flow
    def failing():
        code = "import sys; print('working'); print('error: data/raw: no such folder', file=sys.stderr); sys.exit(2)"
        run_command([sys.executable, "-c", code], tmp_path, label="stage")

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed, match=r"^stage failed: data/raw: no such folder$"):
        state.result()


def test_report_is_a_markdown_table_artifact(harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow
    def reporting():
        return report("unit-report", "A run", {"val bpp": 0.123456, "steps": 6, "note": "a|b", "missing": None},
                      {"MLflow run": "`abc`"})

    markdown = reporting()
    assert "| val bpp | 0.1235 |" in markdown and "| note | a\\|b |" in markdown and "| missing | - |" in markdown
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["unit-report"])))
    assert artifact.type == "markdown" and artifact.data == markdown and "- MLflow run: `abc`" in markdown
