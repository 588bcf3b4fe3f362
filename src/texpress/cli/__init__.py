"""The `texpress` command: one module a command group (codec, train, data, evaluate, registry, slim, bulk).

This is the top layer: a command turns options and model references into library calls (a
--model, --from or checkpoint argument is resolved once, by texpress.registry.refs, before any
checkpoint is read), shows progress and prints the result."""

from __future__ import annotations

import warnings

import typer

from texpress.console import fail
from texpress.errors import TexpressError


def build_app() -> typer.Typer:
    """The full command tree; each layer adds its own sub-commands. The groups are imported here, not
    at the top: they load torch, and main() quiets its warnings first."""
    from texpress.cli import bulk as bulk_commands
    from texpress.cli import codec as codec_commands
    from texpress.cli import data as data_commands
    from texpress.cli import evaluate as evaluate_commands
    from texpress.cli import registry as registry_commands
    from texpress.cli import slim as slim_commands
    from texpress.cli import train as train_commands

    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="texpress: a learned image codec and the pipeline that trains and ships it.")
    for layer in (codec_commands, train_commands, data_commands, evaluate_commands, registry_commands, slim_commands, bulk_commands):
        layer.register(app)
    return app


def main() -> None:
    from typer._click import exceptions as _click_errors  # typer >= 0.25 carries its own click

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from compressai
    app = build_app()
    try:
        code = app(standalone_mode=False)
    except _click_errors.NoArgsIsHelpError as exc:  # a bare group: its help, as before
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
        code = exc.exit_code
    except _click_errors.UsageError as exc:  # a bad option value: one line, not click's framed usage text
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        code = fail(where + " ".join(exc.format_message().split()), exc.exit_code).exit_code
    except typer.Abort:
        code = fail("aborted", 130).exit_code
    except TexpressError as exc:
        code = fail(str(exc)).exit_code
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
