"""`texpress registry register | list | promote | pull`: the model registry's commands."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from texpress.codec.checkpoint import load_model, read_checkpoint, save_checkpoint
from texpress.console import fail, out_console, report_item_error
from texpress.files import file_in_the_way, write_atomic
from texpress.params import load_params
from texpress.registry.config import RegistryConfig
from texpress.registry.listing import list_versions
from texpress.registry.promote import print_decision, promote
from texpress.registry.refs import PREFIX, resolve_checkpoint
from texpress.registry.register import register_checkpoint, register_run

registry_app = typer.Typer(no_args_is_help=True, help="MLflow model registry: register versions, promote a "
                           "challenger to @champion when it wins the gate, pull checkpoints.")

URI_OPTION = typer.Option(None, "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                          "sqlite:///./mlflow.db).")
PARAMS_OPTION = typer.Option(None, "--params", help="params.yaml whose registry: section configures the gate "
                             "(default: ./params.yaml when present).")


def _config(params: Optional[Path]):
    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    return RegistryConfig.from_dict(load_params(params, "registry") if params else {})


@registry_app.command("register")
def register_command(
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Training run whose model/model.ckpt to register."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint file to register."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Registered model name (default: registry.name, "
                                       "else texpress-<preset>)."),
    eval_summary: Optional[Path] = typer.Option(None, "--eval-summary", help="summary.json of `texpress eval run` "
                                                "on this checkpoint: eval.* tags."),
    tracking_uri: Optional[str] = URI_OPTION,
    params: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Create a model version (pyfunc model + tags); a checkpoint already registered returns its version."""
    if (run_id is None) == (checkpoint is None):
        raise fail("give exactly one of --run-id and --checkpoint")
    if name is not None and not name.strip():
        raise fail("--name is empty (leave it out for the default name)")
    cfg = _config(params)
    if run_id:
        r = register_run(run_id, name, tracking_uri=tracking_uri, eval_summary=eval_summary, cfg=cfg)
    else:
        r = register_checkpoint(resolve_checkpoint(checkpoint, tracking_uri), name, tracking_uri=tracking_uri, eval_summary=eval_summary, cfg=cfg)
    verb = "registered" if r.created else "already registered:"
    out_console.print(f"{verb} {r.name} version {r.version} (fingerprint {r.fingerprint}, run {r.run_id})",
                      markup=False, soft_wrap=True)


@registry_app.command("list")
def list_command(
    name: Optional[str] = typer.Argument(None, help="Registered model (default: every texpress model)."),
    tracking_uri: Optional[str] = URI_OPTION,
) -> None:
    """Versions with their aliases, fingerprints and key metrics."""
    rows = list_versions(name, tracking_uri)
    t = Table(title="registered texpress models", title_justify="left")
    for col in ("name", "version", "aliases", "fingerprint", "preset", "dec kMAC/px", "bpp", "PSNR", "MS-SSIM",
                "texture", "BD-rate vs JPEG", "last decision"):
        t.add_column(col, justify="right" if col in ("version", "dec kMAC/px", "bpp", "PSNR", "MS-SSIM", "texture",
                                                     "BD-rate vs JPEG") else "left")
    for r in rows:
        t.add_row(*(escape(str(r[k])) for k in ("name", "version", "aliases", "fingerprint", "preset", "kmac", "bpp",
                                                 "psnr", "ms_ssim", "texture", "bd_jpeg", "decision")))
    out_console.print(t)
    if not rows:
        out_console.print("no versions", style="dim")


@registry_app.command("promote")
def promote_command(
    name: str = typer.Argument(..., help="Registered model name."),
    candidate: str = typer.Option(..., "--candidate", help="Version to promote."),
    images: list[str] = typer.Option([], "--images", "-i", help="Evaluation set (files, folders, .tar shards; "
                                     "default: registry.images). Repeatable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log the decision; move no alias."),
    tracking_uri: Optional[str] = URI_OPTION,
    params: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Evaluate the candidate against @champion side by side and move the aliases by the gate's verdict."""
    decision = promote(name, candidate, tracking_uri=tracking_uri, cfg=_config(params), images=images or None,
                       dry_run=dry_run, on_error=report_item_error)
    print_decision(decision)


@registry_app.command("pull")
def pull_command(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or models:/..."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint file to write."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing file."),
    tracking_uri: Optional[str] = URI_OPTION,
) -> None:
    """Write the checkpoint of a registered version to a plain file."""
    if output.exists() and not force:
        raise fail(f"{output} exists (use --force to overwrite)")
    if (blocking := file_in_the_way(output)) is not None:
        raise fail(f"{output}: {blocking} is a file, not a folder")
    uri = ref if ref.startswith(PREFIX) else PREFIX + ref
    path = resolve_checkpoint(uri, tracking_uri)
    if (path.suffix == ".safetensors") == (output.suffix == ".safetensors"):
        write_atomic(output, writer=lambda tmp: shutil.copyfile(path, tmp))
    else:  # the other file format: re-save the same tensors (same fingerprint)

        save_checkpoint(load_model(path), output, meta=read_checkpoint(path).get("meta"), update=False)
    out_console.print(f"wrote {output} ({uri})", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
