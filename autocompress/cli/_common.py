"""What every command shares: the Typer app, consoles, option types, one error edge."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from autocompress.errors import TrialAborted, UserError

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


def _print_version(value: bool) -> None:
    if value:
        from autocompress import __version__

        console.print(f"autocompress {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version"),
    ] = False,
) -> None:
    """Options before any command (the app's help text is set on `app` above)."""


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


class Stopped(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, raised where Ctrl-C's KeyboardInterrupt would be."""


@contextmanager
def stoppable() -> Iterator[None]:
    """SIGTERM (`kill`, a scheduler's stop) ends a search the way Ctrl-C does.

    Optuna fails the running trial on a KeyboardInterrupt (the objective records the
    signal as its `failed_reason`) and stops; without this, SIGTERM killed the process
    and left the trial RUNNING until a heartbeat went stale. The command then prints one
    line and exits with 128 + the signal number, as a shell reports a killed process.
    """

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if _in_trial_bookkeeping(frame):  # asking or telling: a few ms, then try again
            threading.Timer(RESIGNAL_AFTER_S, os.kill, (os.getpid(), signum)).start()
            return
        raise Stopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # On the handlers: a logger's own filters do not see its children's records.
    handlers = logging.getLogger("optuna").handlers
    for handler in handlers:
        handler.addFilter(_without_stop_traceback)
    try:
        yield
    except KeyboardInterrupt as stop:
        name = str(stop) or "SIGINT"
        errors.print(
            f"[bold red]stopped[/] by {name}: a trial that was running is marked failed "
            "with the reason; run the same command again to go on",
            highlight=False,
        )
        raise typer.Exit(128 + signal.Signals[name]) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        for handler in handlers:
            handler.removeFilter(_without_stop_traceback)


RESIGNAL_AFTER_S = 0.05


def _in_trial_bookkeeping(frame: FrameType | None) -> bool:
    """Whether Optuna is creating or finishing a trial (outside our objective) here.

    An exception raised there breaks Optuna's own state handling ("Should not reach"),
    which is why a stop arriving then is re-sent a moment later instead of raised.
    """
    while frame is not None:
        code = frame.f_code
        if code.co_name in ("__call__", "_run") and code.co_filename.endswith(_OBJECTIVE_FILE):
            return False
        if code.co_name == "_run_trial" and code.co_filename.endswith(_OPTUNA_TRIAL_LOOP):
            return True
        frame = frame.f_back
    return False


_OBJECTIVE_FILE = os.path.join("autocompress", "search.py")
_OPTUNA_TRIAL_LOOP = os.path.join("optuna", "study", "_optimize.py")


def _without_stop_traceback(record: logging.LogRecord) -> bool:
    """Optuna's "trial failed" line for a stop or a recorded fault (a full disk), without
    the traceback: the command prints what happened once, and the trial keeps the reason."""
    if record.exc_info and issubclass(
        record.exc_info[0] or type(None), KeyboardInterrupt | TrialAborted
    ):
        record.exc_info, record.exc_text = None, None
    return True
