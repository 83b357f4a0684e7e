"""`autocompress registry`: list, show, register, promote, roll back, audit.

The same `Registry` methods as the Python API. Reading commands never create a
database; a version whose files changed is refused (exit 1) with the file named, and
so is any change while the audit log, its anchored head or a version row fails to
verify. Every write prints the audit log's new head (ID:SHA256) and appends it to the
anchor file, if there is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autocompress.cli._common import app, console, user_errors
from autocompress.config import DEFAULT_STORAGE_URL

if TYPE_CHECKING:
    from autocompress.registry import AuditEntry, Head, Registry

registry_app = typer.Typer(
    help="Model registry: versions of exports, one champion per model, rollback in one "
    "command, and an append-only, hash-chained audit log.",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")

Storage = Annotated[
    str, typer.Option("--storage", help="SQLAlchemy URL of the database holding the registry")
]
Model = Annotated[str | None, typer.Option("--model", help="Registry model name")]
Reason = Annotated[str, typer.Option("--reason", help="Why; kept in the audit log")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON")]
Anchor = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        help="File the audit log's head is appended to after each write and checked "
        "against (default: $AUTOCOMPRESS_REGISTRY_ANCHOR, else DB.registry-anchor.txt "
        "beside a SQLite file; PostgreSQL has none unless given)",
    ),
]
NUMERIC = {"version", "trial", "accuracy", "f1", "p50 ms"}
Version = Annotated[int, typer.Argument(help="Version number (see `autocompress registry list`)")]


@registry_app.command("list")
@user_errors
def list_versions(
    model: Model = None, storage: Storage = DEFAULT_STORAGE_URL, as_json: Json = False
) -> None:
    """List registered versions, oldest first."""
    with _registry(storage) as registry:
        versions = registry.versions(model)
    if as_json:
        _print_json([v.to_dict() for v in versions])
        return
    table = Table(title=f"model registry ({len(versions)} versions)")
    for column in ("version", "model", "status", "study", "trial", "accuracy", "f1", "p50 ms"):
        table.add_column(column, justify="right" if column in NUMERIC else "left")
    table.add_column("registered (UTC)")
    table.add_column("export")
    for v in versions:
        scores = _scores(v.metrics)
        table.add_row(
            str(v.version),
            escape(v.model),
            _status(v.status),
            escape(v.source_study),
            str(v.source_trial),
            *scores,
            f"{v.created_at:%Y-%m-%d %H:%M}",
            escape(str(v.export_dir)),
        )
    console.print(table)


@registry_app.command()
@user_errors
def show(version: Version, storage: Storage = DEFAULT_STORAGE_URL, as_json: Json = False) -> None:
    """One version: where it is, what it scored, where it came from, and its audit trail."""
    with _registry(storage) as registry:
        found = registry.get(version)
        entries = registry.audit(version=version)
    if as_json:
        _print_json({**found.to_dict(), "audit": [e.to_dict() for e in entries]})
        return
    accuracy, f1, p50 = _scores(found.metrics)
    facts = Table.grid(padding=(0, 2))
    for name, value in (
        ("version", str(found.version)),
        ("model", escape(found.model)),
        ("status", _status(found.status)),
        ("export", escape(str(found.export_dir))),
        ("manifest sha256", found.manifest_sha256),
        ("source", f"study {escape(found.source_study)}, trial {found.source_trial}"),
        ("policy", escape(str(found.source_policy))),
        ("accuracy / f1 / p50 ms", f"{accuracy} / {f1} / {p50}"),
        ("registered", f"{found.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ):
        facts.add_row(f"[bold]{name}[/]", value)
    console.print(facts)
    _print_audit(entries, f"audit trail of version {found.version}")


@registry_app.command()
@user_errors
def register(
    export_dir: Annotated[Path, typer.Argument(help="An export folder (autocompress export)")],
    model: Model = None,
    reason: Reason = "",
    storage: Storage = DEFAULT_STORAGE_URL,
    anchor: Anchor = None,
) -> None:
    """Add a verified export folder as a candidate version (model: its study's name)."""
    with _registry(storage, anchor) as registry:
        added = registry.register(export_dir, model=model, reason=reason)
    console.print(
        f"registered {escape(str(added.export_dir))} as version [bold]{added.version}[/] of "
        f"'{escape(added.model)}' (candidate); make it the champion with: "
        f"autocompress registry promote {added.version}",
        soft_wrap=True,
    )
    _print_head(registry)


@registry_app.command()
@user_errors
def promote(
    version: Version,
    reason: Reason = "",
    storage: Storage = DEFAULT_STORAGE_URL,
    anchor: Anchor = None,
) -> None:
    """Make a version its model's champion (files and audit log verified first; the old
    one retires)."""
    with _registry(storage, anchor) as registry:
        replaced = None
        current = registry.get(version)
        if (champion := registry.champion(current.model)) is not None:
            replaced = champion.version
        promoted = registry.promote(version, reason=reason)
    after = f" (version {replaced} retired)" if replaced is not None else ""
    console.print(
        f"version [bold]{promoted.version}[/] is now the champion of "
        f"'{escape(promoted.model)}'{after}"
    )
    _print_head(registry)


@registry_app.command()
@user_errors
def rollback(
    model: Model = None,
    reason: Reason = "",
    storage: Storage = DEFAULT_STORAGE_URL,
    anchor: Anchor = None,
) -> None:
    """Withdraw the champion and restore the previous one, in one step (audit log
    verified first)."""
    with _registry(storage, anchor) as registry:
        done = registry.rollback(model, reason=reason)
    console.print(
        f"rolled back '{escape(done.restored.model)}': version {done.withdrawn.version} is "
        f"rolled_back, version [bold]{done.restored.version}[/] is the champion again"
    )
    _print_head(registry)


@registry_app.command("audit")
@user_errors
def audit_log(
    model: Model = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the hash chain, the anchored head and every version row; exit 1 "
            "naming each problem",
        ),
    ] = False,
    storage: Storage = DEFAULT_STORAGE_URL,
    anchor: Anchor = None,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            metavar="ID:SHA256",
            help="With --verify: a head printed by an earlier write, checked instead of "
            "the anchor file",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Print the audit log (who, when, what, why); --verify checks its hash chain, that
    it still holds the anchored head, and that every version row matches it."""
    given = _head(head) if head is not None else None
    with _registry(storage, anchor) as registry:
        entries = registry.audit(model=model)
        checked = registry.verify(given) if verify else None
    if as_json:
        _print_json([e.to_dict() for e in entries])
    else:
        _print_audit(entries, "registry audit log")
    if checked is not None:
        console.print(f"[green]OK[/] audit hash chain intact ({checked.entries} entries)")
        uncovered = ""
        if checked.not_covered:
            listed = ", ".join(str(v) for v in checked.not_covered)
            uncovered = (
                f"; {len(checked.not_covered)} not covered (last changed before row "
                f"digests were recorded: versions {listed})"
            )
        console.print(
            f"[green]OK[/] version rows: {len(checked.matching)} match the audit log"
            f"{escape(uncovered)}",
            soft_wrap=True,
        )
        if checked.anchor.startswith("the "):
            where = f"holds {escape(checked.anchor)}"
            console.print(f"[green]OK[/] chain {where}", soft_wrap=True)
        else:
            console.print(
                f"[yellow]not checked[/]: deleted newest entries ({escape(checked.anchor)}; "
                "pass --anchor FILE or --head ID:SHA256)",
                soft_wrap=True,
            )


@contextmanager
def _registry(storage: str, anchor: Path | None = None) -> Iterator[Registry]:
    from autocompress.registry import Registry

    registry = Registry(storage, anchor=anchor)
    try:
        yield registry
    finally:
        registry.close()


def _head(text: str) -> Head:
    from autocompress.errors import UserError
    from autocompress.registry import Head

    try:
        return Head.parse(text)
    except ValueError as error:
        raise UserError(f"--head: {error}") from None


def _print_head(registry: Registry) -> None:
    """The audit log's new head, as the operator may keep it (and --head takes it)."""
    if registry.last_head is None:
        return
    if registry.anchor is not None:
        where = f"appended to {registry.anchor}"
    else:
        where = (
            "no anchor file: keep this line, or pass --anchor FILE or set "
            "AUTOCOMPRESS_REGISTRY_ANCHOR"
        )
    console.print(
        f"audit head {registry.last_head} ({escape(where)})", soft_wrap=True, highlight=False
    )


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _print_audit(entries: list[AuditEntry], title: str) -> None:
    table = Table(title=title)
    for column in ("#", "at (UTC)", "actor", "action", "model", "version", "reason", "details"):
        table.add_column(column, justify="right" if column in ("#", "version") else "left")
    for e in entries:
        table.add_row(
            str(e.id),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            escape(e.actor),
            e.action,
            escape(e.model),
            "" if e.version is None else str(e.version),
            escape(e.reason) or "-",
            # The row digest is for `audit --verify` (and --json), not for reading.
            escape(json.dumps({k: v for k, v in e.details.items() if k != "row_sha256"})),
        )
    console.print(table)


def _scores(metrics: dict[str, Any]) -> tuple[str, str, str]:
    """Accuracy, F1 and p50 latency from an export's metrics.json, '-' where absent."""
    scores = metrics.get("metrics") or {}
    p50 = (metrics.get("measurement") or {}).get("latency_p50_ms")
    return (
        _number(scores.get("accuracy"), ".4f"),
        _number(scores.get("f1"), ".4f"),
        _number(p50, ".3f"),
    )


def _number(value: Any, spec: str) -> str:
    return "-" if not isinstance(value, int | float) else format(value, spec)


def _status(status: str) -> str:
    colour = {"champion": "bold green", "rolled_back": "red", "retired": "dim"}.get(status)
    return f"[{colour}]{status}[/]" if colour else str(status)
