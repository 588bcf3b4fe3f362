"""Shared terminal output for the CLI: one stderr console, one-line errors, no tracebacks."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

EXIT_FAILED_ITEMS = 1  # some inputs of a batch failed, the rest were processed
EXIT_USAGE = 2  # the command could not run at all


def fail(message: str, code: int = EXIT_USAGE) -> "typer.Exit":
    """Print `error: message` on one line and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def report_item_error(name: str, message: str) -> None:
    """One line per failed input of a batch: the file and the reason."""
    err_console.print(f"[red]error:[/red] {escape(name)}: {escape(message)}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, soft_wrap=True)
