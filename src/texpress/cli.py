"""The `texpress` command: assembles the sub-commands of each layer."""

from __future__ import annotations

import warnings

import typer

from texpress.console import fail
from texpress.errors import TexpressError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="texpress: a learned image codec and the pipeline that trains and ships it.")


def _register() -> None:
    from texpress.codec import commands as codec_commands

    codec_commands.register(app)
    for module in ("texpress.data.commands", "texpress.train.commands", "texpress.evaluate.commands"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from compressai
    _register()
    try:
        app()
    except TexpressError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None


if __name__ == "__main__":
    main()
