"""Study commands: run (or resume) a search, print its front, export, verify."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autocompress.cli._common import (
    StorageOption,
    StudyFile,
    StudyNameOption,
    app,
    console,
    stoppable,
    user_errors,
)
from autocompress.config import load_study_config
from autocompress.cost_summary import cost_control_lines
from autocompress.dashboard import (
    CHANGE_CONVENTION,
    SPLIT_NAMES,
    change_with_interval,
    confidence_label,
    constraint_mode_label,
    headline_changes,
    interval_label,
    seeds_summary,
    short_change_label,
    split_label,
)
from autocompress.policies import parse_policy, policy_choices

if TYPE_CHECKING:
    from rich.progress import Progress

    from autocompress.front import FrontMember


@app.command()
@user_errors
def run(
    study_file: StudyFile,
    n_trials: Annotated[int | None, typer.Option("--n-trials", help="Trials to add")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to run")] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Data file; overrides the study")
    ] = None,
    export: Annotated[bool, typer.Option(help="Export the selected trial at the end")] = True,
) -> None:
    """Run (or resume) a study, print its Pareto front and export the selection."""
    # Validate the file and the options first: a mistake answers before torch loads.
    overrides = {
        "n_trials": n_trials,
        "timeout": timeout,
        "storage": storage,
        "study_name": study_name,
        "data": data,
    }
    loaded = load_study_config(study_file, **overrides)  # read once, passed on
    import optuna

    from autocompress import api

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log_progress_messages()
    with stoppable(), progress_bar(loaded.config.n_trials) as (_, callback):
        result = api.run_study(loaded, callbacks=[callback], progress=False)
    from autocompress.store.trials import count_trials

    config = result.loaded.config
    out = None
    if export:
        # Trains the finalists' seeds first, so the front below can show them. Refreshes
        # this study's own earlier export; anything else there is refused.
        out = result.export(overwrite=True)
    print_front(
        result.front,
        result.teacher,
        f"Pareto front of {config.study_name} ({count_trials(result.study)} trials, feasible only)",
        result.baselines,
        seeds=result.seeds,
    )
    for line in cost_control_lines(result.study.get_trials(deepcopy=False)):
        console.print(escape(line))
    if out is not None:
        console.print(f"{_exported(out)}  (check it with: autocompress verify {escape(str(out))})")
        report = api.write_study_report(result.study, result.loaded)
        console.print(f"report: {escape(str(report.html))} (plot: {escape(str(report.png))})")


@app.command()
@user_errors
def report(
    study_file: StudyFile,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to write (default: runs/reports/NAME)")
    ] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
) -> None:
    """Write a study's HTML report: the front with held-out intervals, what was measured."""
    loaded = load_study_config(study_file, storage=storage, study_name=study_name)
    from autocompress import api

    result = api.load_result(loaded)
    files = api.write_study_report(result.study, result.loaded, out)
    console.print(f"report: {escape(str(files.html))} (plot: {escape(str(files.png))})")


@app.command()
@user_errors
def front(
    study_file: StudyFile,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print the latest stored Pareto front of a study."""
    loaded = load_study_config(study_file, storage=storage, study_name=study_name)
    from autocompress import api

    stored = api.stored_front(loaded)
    if as_json:
        sys.stdout.write(json.dumps([m.to_dict() for m in stored.members], indent=2) + "\n")
    else:
        print_front(
            stored.members,
            stored.teacher,
            "Pareto front (latest snapshot)",
            stored.baselines,
            seeds=stored.seeds,
        )


@app.command()
@user_errors
def export(
    study_file: StudyFile,
    out: Annotated[Path, typer.Option("--out", help="Folder to create")],
    policy: Annotated[str | None, typer.Option("--policy", help=policy_choices(sep=" | "))] = None,
    storage: StorageOption = None,
    study_name: StudyNameOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace an empty folder or an earlier export that verifies"),
    ] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key", help="Ed25519 private key (autocompress keygen): write manifest.sig"
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            min=1,
            help="Seeds to judge the selected recipe over (default: the study's export.seeds; "
            "1: only the search's own training)",
        ),
    ] = None,
) -> None:
    """Export one trial of a study as a verifiable folder."""
    loaded = load_study_config(study_file, storage=storage, study_name=study_name)
    if policy is not None:
        parse_policy(policy)  # a bad policy is refused before the study is opened
    if sign_key is not None:
        from autocompress.manifest import load_private_key

        load_private_key(sign_key)  # a bad key is refused before any work
    from autocompress import api

    result = api.load_result(loaded)
    path = result.export(out, policy=policy, overwrite=overwrite, sign_key=sign_key, seeds=seeds)
    signed = f", signed with {escape(str(sign_key))}" if sign_key is not None else ""
    console.print(f"{_exported(path)}{signed}")


@app.command()
@user_errors
def verify(
    folder: Annotated[Path, typer.Argument(help="An export folder")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Ed25519 public key: require a valid manifest.sig"),
    ] = None,
) -> None:
    """Check every file of an export against its sha256 manifest (and its signature)."""
    from autocompress.manifest import SIGNATURE, is_signed
    from autocompress.manifest import verify as verify_folder

    count = verify_folder(folder, public_key=public_key)
    if public_key is not None:
        signature = f"; {SIGNATURE} is a valid signature by {escape(str(public_key))}"
    elif is_signed(folder):
        signature = f"; signed ({SIGNATURE} not checked: pass --public-key KEY.pub)"
    else:
        signature = "; unsigned"
    console.print(
        f"[green]OK[/] {escape(str(folder))}: {count} files match manifest.json{signature}",
        highlight=False,
    )


def _exported(folder: Path) -> str:
    """'exported trial N (policy P) to FOLDER', read back from the export's config.yaml."""
    import yaml

    study = yaml.safe_load((folder / "config.yaml").read_text())["study"]
    return (
        f"exported trial [bold]{study['trial_number']}[/] (policy {escape(str(study['policy']))}) "
        f"to [bold]{escape(str(folder))}[/]"
    )


@contextmanager
def progress_bar(total: int | None = None) -> Iterator[tuple[Progress, Callable[..., None]]]:
    """A trials bar and the Optuna callback that advances it (one log line per trial)."""
    from rich.progress import (  # only where trials run
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        bar = progress.add_task("trials", total=total)
        yield progress, _progress_callback(progress, bar)


def log_progress_messages() -> None:
    """Show autocompress's own INFO messages (data, teacher, export) above the bar."""
    from rich.logging import RichHandler

    logger = logging.getLogger("autocompress")
    if not logger.handlers:
        handler = RichHandler(console=console, show_path=False, show_level=False)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # Printed once, here: onnxruntime's int4 quantizer puts a handler on the root logger
    # when imported (logging.basicConfig), which would print every line a second time.
    logger.propagate = False


def _progress_callback(progress: Progress, bar: Any) -> Callable[..., None]:
    """Advance the bar and log one line per finished trial (readable in CI logs too)."""
    from optuna.trial import TrialState

    from autocompress.dashboard import infeasible_reason, named_constraints

    def callback(study: Any, trial: Any) -> None:
        summary = trial.user_attrs.get("recipe_summary", "")
        if trial.state == TrialState.PRUNED:
            line = f"pruned ({summary}): {trial.user_attrs.get('pruned_reason', '')}"
        elif trial.state == TrialState.COMPLETE:
            metrics = trial.user_attrs["metrics"]
            latency = trial.user_attrs["measurement"]["latency_p50_ms"]
            broken = infeasible_reason(
                named_constraints(trial), trial.user_attrs.get("constraint_mode")
            )
            # The scores the study optimises (credit: roc_auc, brier), then the latency.
            scores = [name for name in study.metric_names or [] if name in metrics]
            shown = ", ".join(f"{name} {metrics[name]:.3f}" for name in scores or ["accuracy"])
            line = (
                f"{summary}: {shown}, p50 {latency:.3f} ms"
                f"{f' (infeasible: {broken})' if broken else ''}"
            )
        else:
            line = trial.state.name.lower()
        progress.update(bar, advance=1)
        progress.console.print(f"  trial {trial.number}: {line}", highlight=False)

    return callback


CREDIT_COLUMNS = {"roc_auc": "AUC", "ks": "KS", "brier": "Brier", "threshold": "threshold"}


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _first(rows: list[FrontMember], key: str) -> dict | None:
    """The first record of `key` (search_split, held_out…) among the rows, students first."""
    for member in sorted(rows, key=lambda m: m.is_teacher):
        value = member.metrics.get(key)
        if isinstance(value, dict) and value:
            return value
    return None


def _held_out_cell(member: FrontMember, name: str) -> str:
    """The held-out change `name` with its interval, in points; `—` when not recorded."""
    held = member.metrics.get("held_out") or {}
    return change_with_interval(
        (held.get("changes") or {}).get(name), (held.get("intervals") or {}).get(name)
    )


def _measured_captions(
    rows: list[FrontMember], scores: list[str], seeds: dict[int, dict], credit: bool
) -> tuple[list[str], list[tuple[str, Callable[[FrontMember], str]]]]:
    """What the score columns were measured on, the held-out columns and their caption,
    the constraint mode, and the finalists re-trained with several seeds."""
    split, held = _first(rows, "search_split"), _first(rows, "held_out")
    mode = _first(rows, "constraint_mode")
    captions, columns = [], []
    if split:
        captions.append(
            f"{', '.join(scores)} = scores on the {split_label(split)}: what the search, "
            "the constraints and the selection saw"
        )
    level = confidence_label((held or split or {}).get("confidence"))
    if held:
        columns += [
            (f"test {short_change_label(name)}\n[{level} CI]", partial(_held_out_cell, name=name))
            for name in headline_changes(credit)
        ]
        interval = interval_label(held)
        captions.append(
            f"test … [{level} CI] = the change versus the teacher on the {split_label(held)}, "
            "held out: never used for choosing"
            + (f"; [low, high] = {interval}" if interval else "")
            + f"; {CHANGE_CONVENTION}; — = not recorded (stored before held-out scoring)"
        )
    if mode:
        captions.append(
            f"constraints judged on the {constraint_mode_label(mode)} of each validation change"
        )
    for member in sorted(rows, key=lambda m: m.trial_number):
        if len(seeds.get(member.trial_number, {}).get("seeds", ())) > 1:  # not the teacher
            names = headline_changes(credit)[:1]
            captions.append(
                f"trial {member.trial_number} re-trained with "
                + seeds_summary(seeds[member.trial_number], names)
            )
    return [escape(c) for c in captions], columns


def _held_out_only(baseline: dict) -> FrontMember:
    """A reference model as a row the held-out columns can read (no trial of its own)."""
    from autocompress.front import FrontMember

    return FrontMember(-1, {}, {"held_out": baseline.get("held_out")})


def _reference_caption(split: dict | None, baselines: dict[str, dict]) -> str:
    """What the reference rows are, and on which split they were scored when that is not
    the split of the rows above (baselines record it as `split`; before, always test)."""
    caption = (
        "(reference) = a model a bank would use instead, fitted on the same training "
        "split and measured on the same target in this study"
    )
    if not split:
        return caption
    scored_on = {str(b.get("split", "test")) for b in baselines.values()}
    if scored_on == {str(split.get("split"))}:
        return caption
    named = " and ".join(SPLIT_NAMES.get(s, s) for s in sorted(scored_on))
    return caption + (
        f"; scored on the {named} split, not on the rows' {split_label(split)}: "
        "compare them with the test column, not with the score columns"
    )


def print_front(
    members: list[FrontMember],
    teacher: FrontMember | None,
    title: str,
    baselines: dict[str, dict] | None = None,
    *,
    seeds: dict[int, dict] | None = None,
) -> None:
    """The front sorted by latency; the teacher is always shown, marked when dominated;
    `baselines` (reference models on the same split and target) are rows below it.
    A latency that stayed noisy after re-measuring is marked `*` and explained below.

    The score columns are what the search saw (the validation split); trials that
    recorded it add the headline change versus the teacher on the held-out test split,
    with its interval. `seeds` (by trial number, as
    `dashboard.seed_runs(study.user_attrs)` reads them) summarises the finalists
    re-trained with several seeds."""
    noisy_mark = "*"
    on_front = {m.trial_number for m in members}
    rows = list(members)
    if teacher is not None and teacher.trial_number not in on_front:
        rows.append(teacher)
    # Credit studies score ranking and calibration too: AUC, KS, Brier and the threshold.
    credit = any("ks" in m.metrics or "brier" in m.metrics for m in rows)
    scores = CREDIT_COLUMNS if credit else {"roc_auc": "roc_auc"}
    captions, measured = _measured_captions(
        rows, ["accuracy", "f1", *scores.values()], seeds or {}, credit
    )
    captions.append(
        "(teacher, dominated) = the uncompressed baseline, "
        "not on the front because another trial beats it on every objective"
    )
    noisy = sorted((m for m in rows if m.noisy), key=lambda m: m.trial_number)
    if noisy:
        captions.append(
            f"{noisy_mark} noisy latency: its timings stayed spread wider than target.max_cv "
            "after every re-measurement, so its p50/p90 may be off and may not rank it "
            "against close trials: "
            + "; ".join(f"trial {m.trial_number}: {m.noise_note()}" for m in noisy)
        )
    table = Table(title=title, caption="\n".join(captions))
    intervals = {heading for heading, _ in measured}
    for column in (
        "trial",
        "recipe",
        "accuracy",
        "f1",
        *scores.values(),
        *(heading for heading, _ in measured),
        "p50 ms",
        "p90 ms",
        "size KB",
        "params",
    ):
        table.add_column(
            escape(column),
            justify="left" if column == "recipe" else "right",
            no_wrap=column in intervals,  # `+1.23 [-1.01, +3.52]` reads only on one line
        )
    for member in sorted(rows, key=lambda m: m.metrics.get("latency_p50_ms") or 0.0):
        m = member.metrics
        name = str(member.trial_number)
        if member.is_teacher:
            name += " (teacher)" if member.trial_number in on_front else " (teacher, dominated)"
        mark = f" {noisy_mark}" if member.noisy else ""
        table.add_row(
            name,
            str(m.get("recipe", "")),
            f"{m['accuracy']:.4f}",
            f"{m['f1']:.4f}",
            *(_score(m.get(key)) for key in scores),
            *(escape(cell(member)) for _, cell in measured),
            f"{m['latency_p50_ms']:.3f}{mark}",
            f"{m['latency_p90_ms']:.3f}{mark}",
            f"{(m['size_bytes'] or 0) / 1024:.1f}",
            f"{m.get('num_parameters') or 0:,}",
        )
    if baselines:
        table.add_section()
        captions.append(_reference_caption(_first(rows, "search_split"), baselines))
        table.caption = "\n".join(captions)
    for name, baseline in (baselines or {}).items():
        m, measured_on = baseline["metrics"], baseline["measurement"]
        mark = f" {noisy_mark}" if measured_on.get("noisy") else ""
        table.add_row(
            "(reference)",
            name,
            f"{m['accuracy']:.4f}",
            f"{m['f1']:.4f}",
            *(_score(m.get(key)) for key in scores),
            *(escape(cell(_held_out_only(baseline))) for _, cell in measured),
            f"{measured_on['latency_p50_ms']:.3f}{mark}",
            f"{measured_on['latency_p90_ms']:.3f}{mark}",
            f"{measured_on['size_bytes'] / 1024:.1f}",
            "",
        )
    console.print(table)
