"""Bad input to every argument of `texpress registry ...` and `texpress bulk ...`: one `error:` line,
exit 2, nothing written. In-process through texpress.cli.main (the console entry point), so that
the ~60 cases cost no child processes; every case fails before Ray starts or a model is loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from texpress.cli import main

from .test_bad_input import files_under


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a checkpoint, an image, a file where a folder is wanted, bad YAML, and an MLflow
    store with no model in it."""
    from PIL import Image

    from texpress.codec.checkpoint import build_model, save_checkpoint
    from texpress.codec.config import get_preset
    from texpress.registry.store import open_store

    root = tmp_path_factory.mktemp("args")
    save_checkpoint(build_model(get_preset("lite"), seed=0), root / "lite.ckpt")
    Image.new("RGB", (32, 32)).save(root / "a.png")
    (root / "file").write_text("x")
    (root / "bad.yaml").write_text("{registry: [")
    open_store(f"sqlite:///{root}/m.db").client().search_registered_models()  # creates the empty store
    return root


REGISTRY = {
    "register: neither --run-id nor --checkpoint": (["registry", "register"], "exactly one of --run-id"),
    "register --run-id: unknown run": (["registry", "register", "--run-id", "nope"], "run nope not found"),
    "register --checkpoint: missing file": (["registry", "register", "-c", "nope.ckpt"], "nope.ckpt"),
    "register --name: empty": (["registry", "register", "-c", "lite.ckpt", "--name", " "], "--name is empty"),
    "register --eval-summary: missing": (["registry", "register", "-c", "lite.ckpt", "--eval-summary", "no.json"],
                                         "no.json"),
    "register --tracking-uri: unsupported scheme": (["registry", "register", "-c", "lite.ckpt", "--tracking-uri",
                                                     "ftp://x"], "ftp://x: not a usable MLflow store"),
    "register --params: bad YAML": (["registry", "register", "-c", "lite.ckpt", "--params", "bad.yaml"], "bad.yaml"),
    "list NAME: unknown model": (["registry", "list", "nope"], "no registered model 'nope'"),
    "list --tracking-uri: no store": (["registry", "list", "--tracking-uri", "sqlite:///none.db"], "no MLflow store"),
    "promote NAME: unknown model": (["registry", "promote", "nope", "--candidate", "1"], "no registered model"),
    "promote --candidate: missing": (["registry", "promote", "nope"], "Missing option '--candidate'"),
    "promote --images: given without a value": (["registry", "promote", "nope", "--candidate", "1", "-i"],
                                                "'-i' requires an argument"),
    "promote --dry-run: takes no value": (["registry", "promote", "nope", "--candidate", "1", "--dry-run=yes"],
                                          "does not take a value"),
    "promote --tracking-uri: no store": (["registry", "promote", "nope", "--candidate", "1", "--tracking-uri",
                                          "sqlite:///none.db"], "no MLflow store"),
    "promote --params: bad YAML": (["registry", "promote", "nope", "--candidate", "1", "--params", "bad.yaml"],
                                   "bad.yaml"),
    "pull REF: unknown model": (["registry", "pull", "nope@champion", "-o", "out.ckpt"], "no registered model"),
    "pull --output: exists": (["registry", "pull", "nope@champion", "-o", "file"], "use --force"),
    "pull --output: under a file": (["registry", "pull", "nope@champion", "-o", "file/x.ckpt"], "is a file"),
    "pull --force: takes no value": (["registry", "pull", "nope@champion", "-o", "x.ckpt", "--force=1"],
                                     "does not take a value"),
    "pull --tracking-uri: no store": (["registry", "pull", "nope@champion", "-o", "x.ckpt", "--tracking-uri",
                                       "sqlite:///none.db"], "no MLflow store"),
}

BULK_COMMON = {  # options compress and decompress share: (changed base options, more args, fragment)
    "SOURCES: none": ({}, [], "Missing argument"),
    "SOURCES: missing folder": ({}, ["nope/"], "nope/: no such file or folder"),
    "--output: a file": ({"-o": "file"}, [], "exists and is not a folder"),
    "--model: missing checkpoint": ({"-m": "nope.ckpt"}, [], "nope.ckpt"),
    "--model: unknown registered model": ({"-m": "models:/nope@champion"}, [], "no registered model"),
    "--workers": ({}, ["--workers", "0"], "'--workers'"),
    "--cpus-per-worker": ({}, ["--cpus-per-worker", "0"], "'--cpus-per-worker'"),
    "--gpus-per-worker": ({}, ["--gpus-per-worker", "-1"], "'--gpus-per-worker'"),
    "--batch-size": ({}, ["--batch-size", "many"], "'--batch-size'"),
    "--webdataset: takes no value": ({}, ["--webdataset=yes"], "does not take a value"),
    "--endpoint-url": ({}, ["--endpoint-url", "minio:9000"], "not an http:// or https:// URL"),
    "--max-pixels": ({}, ["--max-pixels", "0"], "'--max-pixels'"),
    "--max-file-bytes": ({}, ["--max-file-bytes", "-5"], "'--max-file-bytes'"),
    "--report: under a file": ({}, ["--report", "file/r.json"], "is a file, not a folder"),
    "--progress: takes no value": ({}, ["--no-progress=1"], "does not take a value"),
}
BULK = {}
for mode in ("compress", "decompress"):
    for what, (changed, extra, fragment) in BULK_COMMON.items():
        sources = [] if what.startswith("SOURCES") else ["a.png"]
        options = {"-o": "out", "-m": "lite.ckpt", **changed}
        BULK[f"{mode} {what}"] = (["bulk", mode, *sources, *[x for kv in options.items() for x in kv], *extra],
                                  fragment)
BULK["compress --shards: takes no value"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                              "--shards=1"], "does not take a value")
BULK["compress --shard-size"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt", "--shard-size", "0"],
                                 "'--shard-size'")
BULK["compress --effort: above the top"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                            "--effort", "4"], "effort must be a whole number from 0 to 3, got '4'")
BULK["compress --effort: negative"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt", "--effort", "-1"],
                                       "effort must be a whole number from 0 to 3, got '-1'")
BULK["compress --effort: not a number"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                            "--effort", "max"], "'--effort'")
BULK["compress --lambda: not positive"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                            "--effort", "1", "--lambda", "0"], "lambda must be a positive number")
BULK["compress --effort: a model with no lambda"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                                      "--effort", "1"], "pass --lambda")
BULK["compress --quality: a single-rate model"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt",
                                                  "--quality", "50"], "--quality needs a variable-rate model")
BULK["compress --quality: above 100"] = (["bulk", "compress", "a.png", "-o", "out", "-m", "lite.ckpt", "--quality",
                                          "101"], "quality must be from 0 to 100")
BULK.update({
    "verify DEST: not a bulk destination": (["bulk", "verify", "nope", "-m", "lite.ckpt"], "not a bulk destination"),
    "verify --model: no such file": (["bulk", "verify", "out", "-m", "missing.ckpt"], "no such checkpoint"),
    "verify --sample": (["bulk", "verify", "out", "-m", "lite.ckpt", "--sample", "0"], "'--sample'"),
    "verify --all: takes no value": (["bulk", "verify", "out", "-m", "lite.ckpt", "--all=1"], "does not take a value"),
    "verify --seed": (["bulk", "verify", "out", "-m", "lite.ckpt", "--seed", "x"], "'--seed'"),
    "verify --endpoint-url": (["bulk", "verify", "out", "-m", "lite.ckpt", "--endpoint-url", "x"], "not an http://"),
    "verify --json: takes no value": (["bulk", "verify", "out", "-m", "lite.ckpt", "--json=no"],
                                      "does not take a value"),
})
CASES = {**REGISTRY, **BULK}


def snapshot(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in files_under(path)}


@pytest.mark.parametrize("case", list(CASES))
def test_each_registry_and_bulk_argument_answers_bad_input_with_one_line(case, work, monkeypatch, capsys):
    argv, fragment = CASES[case]
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work}/m.db")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["texpress", *argv])
    before = snapshot(work)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert snapshot(work) == before  # nothing written, nothing half-written, the store untouched


def test_every_registry_and_bulk_option_has_a_case():
    import typer.main

    from texpress.cli import build_app

    group = typer.main.get_command(build_app())
    for layer in ("registry", "bulk"):
        for name, command in group.commands[layer].commands.items():
            for param in command.params:
                if param.name == "help":
                    continue
                label = max(param.opts, key=len) if param.param_type_name == "option" else param.name.upper()
                assert any(case.startswith(f"{name} {label}") for case in CASES), f"{layer} {name} {label}"
