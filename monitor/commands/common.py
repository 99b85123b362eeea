"""What every command shares: the error console, one-line errors, the progress bar."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UsageError(Exception):
    """A command line that cannot work as given; the message says what to change."""


def error_exit(problem: object) -> int:
    """Say what stops a command on stderr; 2 is the exit status of every such stop."""
    err.print(f"[red]error:[/] {escape(str(problem))}", soft_wrap=True, highlight=False)
    return 2


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
