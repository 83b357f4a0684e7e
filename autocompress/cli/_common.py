"""What every command shares: the Typer app, consoles, option types, one error edge."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from autocompress.errors import UserError

app = typer.Typer(
    help="AutoML compression search for financial models: prune, distill, quantize, "
    "measured on the target. User mistakes print one message and exit 2; a failed "
    "verification exits 1.",
    no_args_is_help=True,
    add_completion=False,
)
# Tables are wide; when output is piped (CI, logs) do not squeeze them into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

StudyFile = Annotated[Path, typer.Argument(help="A study file, e.g. studies/german_credit.yaml")]
StorageOption = Annotated[
    str | None, typer.Option("--storage", help="SQLAlchemy URL; overrides the study file")
]
StudyNameOption = Annotated[
    str | None, typer.Option("--study-name", help="Optuna study name; overrides the study file")
]


def user_errors(command: F) -> F:
    """Print a `UserError` once, without a traceback, and exit with its code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            errors.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]
