"""`autocompress dashboard`: optuna-dashboard on a study database, with its artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autocompress.cli._common import StorageOption, app, console, user_errors
from autocompress.config import DEFAULT_RUNS_DIR, DEFAULT_STORAGE_URL, load_study_config
from autocompress.errors import UserError


@app.command()
@user_errors
def dashboard(
    study_file: Annotated[
        Path | None,
        typer.Argument(help="A study file: its database and artifacts (else --storage)"),
    ] = None,
    storage: StorageOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; other machines need 0.0.0.0")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    artifact_dir: Annotated[
        Path | None,
        typer.Option("--artifact-dir", help="Trial artifacts; default: the study's"),
    ] = None,
    read_only: Annotated[
        bool | None,
        typer.Option(
            "--read-only/--writable",
            help="Refuse every change (renames, deletions, notes, tells); default: "
            "read-only unless bound to a loopback address",
        ),
    ] = None,
    only_front: Annotated[
        bool,
        typer.Option(
            "--only-front",
            help="List only the study's front (latest snapshot) and its teacher: "
            "optuna-dashboard reads and sends every trial (about 7 KB each) each time the "
            "study page opens, over 10 s at 10,000 trials; use this for large studies. "
            "Notes and artifacts work as usual; renaming or deleting the study is "
            "refused. Needs a study file",
        ),
    ] = False,
) -> None:
    """Browse studies in optuna-dashboard: objectives, feasibility, notes and artifacts."""
    from autocompress.dashboard import check_port_free, serve
    from autocompress.store import database_exists, safe_url

    study_path, study_name = "", ""
    if only_front and study_file is None:
        raise UserError("--only-front: pass the study file (whose front to show)")
    if study_file is not None:
        config = load_study_config(study_file, storage=storage).config
        url, study_name = config.storage_url, config.study_name
        artifacts = artifact_dir or config.artifacts_path / "trials"
    else:
        url = storage or DEFAULT_STORAGE_URL
        artifacts = artifact_dir or DEFAULT_RUNS_DIR / "artifacts" / "trials"
    if not database_exists(url):
        raise UserError(
            f"storage: no database at {safe_url(url)}; run a study first "
            "(autocompress run STUDY.yaml) or pass --storage"
        )
    check_port_free(host, port)
    if study_file is not None:
        study_path = _study_page(url, study_name)
    writable = not read_only if read_only is not None else _is_loopback(host)
    shown = " (front and teacher only)" if only_front else ""
    console.print(
        f"optuna-dashboard on {safe_url(url)} at [bold]http://{host}:{port}/dashboard"
        f"{study_path}[/]{shown} ({'writable' if writable else 'read-only'}; artifacts: "
        f"{artifacts}); Ctrl-C stops it",
        highlight=False,
    )
    serve(
        url,
        artifacts,
        host,
        port,
        writable=writable,
        only_front=study_name if only_front else None,
    )


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (then the dashboard may be writable)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume others can reach it
        return False


def _study_page(url: str, study_name: str) -> str:
    """`/studies/ID` for a study that exists; the dashboard addresses studies by id."""
    from autocompress.store import optuna_storage

    try:
        return f"/studies/{optuna_storage(url).get_study_id_from_name(study_name)}"
    except KeyError:
        raise UserError(
            f"no study named {study_name!r} in this database yet; run it first "
            "(autocompress run STUDY.yaml)"
        ) from None
