"""`texpress train`: the DVC train stage's training, outside DVC (Ray Train, or --backend torch).

Its options are texpress.train.options.OPTIONS, which the single-process trainer's own entry
(`python -m texpress.train`) shares: the typer signature is built from that table."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer
from rich.text import Text

from texpress.console import err_console, out_console, warn
from texpress.registry.refs import resolve_checkpoint
from texpress.train.options import OPTIONS, plan
from texpress.train.ray_driver import run_training, summary_table
from texpress.train.single_process import summary_lines, train_single


def train(**values: Any) -> None:
    """Train the codec: on Ray Train (local Ray, or the cluster at $RAY_ADDRESS), or in this process
    (--backend torch); tracked in MLflow."""
    p = plan(values)
    if p.init_from is not None and values["preset"] is not None:
        warn("--preset is ignored with --from: the architecture comes from the checkpoint")
    init_path = resolve_checkpoint(p.init_from) if p.init_from is not None else None
    err_console.print(p.start_line(), highlight=False)
    if p.backend == "torch":
        outcome = train_single(p.cfg, p.loader_cfg, values["out"], images=values["images"], shards=values["shards"],
                               val=values["val"], init_from=init_path, device=values["device"], amp=p.amp,
                               time_limit=values["time_limit"], mlflow=not values["no_mlflow"])
        for line in summary_lines(outcome):
            out_console.print(Text(line))
        return
    outcome = run_training(p.cfg, p.loader_cfg, values["shards"], values["out"], init_from=init_path,
                           run_name=values["run_name"], storage_path=values["storage_path"])
    out_console.print(summary_table(outcome))


def _typer_command():
    """`train` with one typer parameter per entry of OPTIONS (same flags, types, defaults and help)."""
    params, hints = [], {}
    for o in OPTIONS:
        hint = o.kind if (o.required or o.switch or o.default is not None) else Optional[o.kind]
        default = typer.Option(... if o.required else o.default, *o.flags, help=o.help)
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint))
        hints[o.name] = hint

    def train_command(**values: Any) -> None:
        train(**values)

    train_command.__doc__ = train.__doc__
    train_command.__signature__ = inspect.Signature(params, return_annotation=None)
    train_command.__annotations__ = {**hints, "return": None}
    return train_command


def register(app: typer.Typer) -> None:
    app.command("train")(_typer_command())
