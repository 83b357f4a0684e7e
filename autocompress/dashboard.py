"""What optuna-dashboard shows of a study, and the dashboard server itself.

Every trial carries: its objective values under their names, feasibility in the
form the dashboard reads, its model files, recipe and metrics as artifacts, and a
short markdown note saying what the pass chain did and what it measured, kept as its
`note.md` artifact; the dashboard's own note panel holds it only for the teacher and the
trials on the front when they completed (see `save_trial_note`).
"""

from __future__ import annotations

import copy
import errno
import json
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import UserError

# optuna-dashboard 0.21 reads feasibility only from this list (Optuna's pre-5.0 form);
# Optuna itself reads both forms, so the list alone keeps the two in agreement.
DASHBOARD_CONSTRAINTS_KEY = "constraints"
CONSTRAINT_NAMES_ATTR = "constraint_names"
REPORT_ARTIFACTS_ATTR = "report_artifacts"
NOTE_FILE = "note.md"
NOTE_ARTIFACT_ATTR = "note_artifact"
"""Trial user attribute: the artifact id of the trial's `note.md`."""


def set_constraints(trial: Any, constraints: dict[str, float]) -> None:
    """Store `constraints` (feasible when every value ≤ 0) where Optuna and the dashboard
    both read them; their names go to a user attribute, in the same order."""
    if not constraints:
        return
    names = list(constraints)
    trial.storage.set_trial_system_attr(
        trial._trial_id, DASHBOARD_CONSTRAINTS_KEY, [float(constraints[n]) for n in names]
    )
    trial.set_user_attr(CONSTRAINT_NAMES_ATTR, names)


def named_constraints(trial: Any) -> dict[str, float]:
    """A trial's constraints by name (as `set_constraints` stored them)."""
    names = trial.user_attrs.get(CONSTRAINT_NAMES_ATTR, [])
    values = trial.system_attrs.get(DASHBOARD_CONSTRAINTS_KEY, [])
    return dict(zip(names, values, strict=False))


def attach_report_artifacts(trial: Any, artifact_store: Any, files: dict[str, Any]) -> None:
    """Upload small JSON/YAML files (recipe, metrics) so the dashboard lists them
    beside the model; their artifact ids go to a user attribute."""
    texts = {
        name: yaml.safe_dump(content, sort_keys=False)
        if name.endswith((".yaml", ".yml"))
        else json.dumps(content, indent=2, default=str)
        for name, content in files.items()
    }
    trial.set_user_attr(REPORT_ARTIFACTS_ATTR, _upload_texts(trial, artifact_store, texts))


def _upload_texts(trial: Any, artifact_store: Any, texts: dict[str, str]) -> dict[str, str]:
    """Upload each text as an artifact of `trial` under its file name; their ids."""
    from optuna.artifacts import upload_artifact

    ids: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="autocompress-report-") as workdir:
        for name, text in texts.items():
            path = Path(workdir) / name
            path.write_text(text)
            ids[name] = upload_artifact(
                artifact_store=artifact_store, file_path=str(path), study_or_trial=trial
            )
    return ids


def save_trial_note(trial: Any, artifact_store: Any, body: str, *, on_dashboard: bool) -> None:
    """Keep a trial's markdown note as its `note.md` artifact, and in the dashboard's
    note panel too when `on_dashboard` (the teacher, and a trial on the front when it
    completed: `on_front_when_complete`).

    optuna-dashboard keeps trial notes in the *study's* system attributes: saving one
    reads them all twice, and the study page reads them all again for every trial. A
    note on every trial cost 1 s per note at 10,000 trials and 103 to 253 s to open
    that study (issue 16). An artifact's record is a system attribute of its trial, read
    with that trial only; the dashboard lists `note.md` among the trial's artifacts."""
    ids = _upload_texts(trial, artifact_store, {NOTE_FILE: body})
    trial.set_user_attr(NOTE_ARTIFACT_ATTR, ids[NOTE_FILE])
    if on_dashboard:
        from optuna_dashboard import save_note

        save_note(trial, body)


def trial_note(trial: Any, artifact_store: Any) -> str:
    """A trial's note as `save_trial_note` kept it (its `note.md`); `` if it has none."""
    artifact_id = trial.user_attrs.get(NOTE_ARTIFACT_ATTR)
    if artifact_id is None:
        return ""
    with artifact_store.open_reader(artifact_id) as reader:
        return reader.read().decode()


def on_front_when_complete(trial: Any, values: Sequence[float], members: Iterable[Any]) -> bool:
    """Whether the running `trial`, completing with `values`, is on the study's front,
    given the front's current `members` (complete trials): it is feasible and none of
    them dominates it (`front.front_of` over the members and it).

    The members stand for every complete trial: a trial one of them does not dominate
    is dominated by no complete trial (whatever dominates it is dominated by a member).
    Members that miss another worker's newest trials can only make this say yes where
    a full read would say no."""
    from autocompress.front import front_of

    candidate = copy.copy(trial.study._storage.get_trial(trial._trial_id))
    candidate.values = list(values)  # a copy: the storage's own trial is left as it is
    front = front_of([*members, candidate], trial.study)
    return any(member.trial_number == trial.number for member in front)


def save_study_note(study: Any, body: str) -> None:
    """The note on the study's own page in optuna-dashboard."""
    from optuna_dashboard import save_note

    save_note(study, body)


def baselines_note(baselines: dict[str, dict]) -> str:
    """Markdown: the reference models a study measured beside its trials."""
    lines = [
        "## Reference models (same split, same target, this study)",
        "",
        "| model | ROC AUC | KS | Brier | accuracy@threshold | p50 ms | size KB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, baseline in baselines.items():
        m, measured = baseline["metrics"], baseline["measurement"]
        lines.append(
            f"| {name} | {m.get('roc_auc', float('nan')):.4f} | {m.get('ks', float('nan')):.4f} "
            f"| {m.get('brier', float('nan')):.4f} "
            f"| {m.get('accuracy_at_threshold', float('nan')):.4f} "
            f"| {measured['latency_p50_ms']:.3f} | {measured['size_bytes'] / 1024:.1f} |"
        )
    lines += [
        "",
        "Scores on the validation split, like every trial's (the held-out test split's "
        "are in each model's `held_out`); latency p50 per batch of "
        f"{next(iter(baselines.values()))['measurement'].get('batch_size')} rows, end to end "
        "(raw columns in, probabilities out), measured like every trial.",
    ]
    return "\n".join(lines)


def change_label(name: str) -> str:
    """`accuracy_drop` or `brier_increase` said in words: `accuracy drop`."""
    for suffix in ("_drop", "_increase"):
        if name.endswith(suffix):
            return f"{name.removesuffix(suffix)} {suffix[1:]}"
    return name


def constraint_label(name: str, constraint_mode: dict | None = None) -> str:
    """`accuracy_drop` (drop minus limit, as stored) said as what it is; judged on the
    upper bound of its interval, `accuracy drop (95% upper bound) − limit`."""
    label = change_label(name)
    if label == name:
        return name
    if (constraint_mode or {}).get("kind") == "upper_bound":
        label += f" ({confidence_label(constraint_mode.get('confidence'))} upper bound)"
    return f"{label} − limit"


def failed_constraints(constraints: dict[str, float]) -> list[str]:
    """The names of the constraints over their limit, e.g. `["f1_drop"]`."""
    return [name for name, value in constraints.items() if value > 0]


def infeasible_reason(constraints: dict[str, float], constraint_mode: dict | None = None) -> str:
    """`f1 drop over its limit` (or several): which limits a trial broke; `` if none.
    Judged on the upper bound of an interval: `f1 drop (95% upper bound) over its limit`."""
    upper = (constraint_mode or {}).get("kind") == "upper_bound"
    bound = f" ({confidence_label((constraint_mode or {}).get('confidence'))} upper bound)"
    failed = [
        change_label(name) + (bound if upper else "") for name in failed_constraints(constraints)
    ]
    if not failed:
        return ""
    return f"{' and '.join(failed)} over {'its limit' if len(failed) == 1 else 'their limits'}"


# --- what was measured, said the same way by the note, `autocompress front` and the report

# One study user attribute per finalist re-trained with several seeds before export.
SEEDS_ATTR_PREFIX = "autocompress:seeds:"
SPLIT_NAMES = {
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "train": "training",
}
# Every change versus the teacher keeps its stored sign and is shown in points of the
# score (0.01 = 1 pt): a drop is teacher − student, an increase student − teacher.
CHANGE_CONVENTION = (
    "drop = teacher − student, increase = student − teacher, in points of the score "
    "(1 pt = 0.01), positive = worse than the teacher"
)


def seed_runs(study_user_attrs: dict[str, Any]) -> dict[int, dict]:
    """The finalists re-trained with several seeds, by trial number (`{}` if none)."""
    runs = {}
    for key, value in study_user_attrs.items():
        number = key.removeprefix(SEEDS_ATTR_PREFIX)
        if key.startswith(SEEDS_ATTR_PREFIX) and number.isdigit() and isinstance(value, dict):
            runs[int(number)] = value
    return runs


def split_label(split: dict | None) -> str:
    """`validation split (200 rows)` from a `search_split`/`held_out` record; `` if None."""
    if not split:
        return ""
    name = SPLIT_NAMES.get(str(split.get("split")), str(split.get("split") or "unnamed"))
    rows = split.get("rows")
    return f"{name} split" + (f" ({rows:,} rows)" if isinstance(rows, int) else "")


def confidence_label(confidence: float | None) -> str:
    """0.95 as `95%` (`?%` when not recorded)."""
    return "?%" if confidence is None else f"{100 * confidence:g}%"


def interval_label(split: dict | None) -> str:
    """`95% paired bootstrap interval, 1,000 resamples` from a split record; `` if none."""
    if not split or split.get("confidence") is None:
        return ""
    resamples = split.get("resamples")
    return f"{confidence_label(split['confidence'])} paired bootstrap interval" + (
        f", {resamples:,} resamples" if isinstance(resamples, int) else ""
    )


def constraint_mode_label(mode: dict | None) -> str:
    """What a limit is compared with: `point estimate` or `upper bound of the 95%
    interval`; `` when the trial did not record it."""
    if not mode:
        return ""
    if mode.get("kind") == "upper_bound":
        return f"upper bound of the {confidence_label(mode.get('confidence'))} interval"
    if mode.get("kind") == "point":
        return "point estimate"
    return str(mode.get("kind") or "")


def points(value: float | None) -> str:
    """A change (as a fraction of the score) in points, signed: 0.012 → `+1.20`."""
    return "—" if value is None else f"{100 * value:+.2f}"


def change_with_interval(value: float | None, interval: Any = None, unit: str = "") -> str:
    """`+1.20 [-0.50, +2.90]` (points; `unit` after the value); `—` when not recorded."""
    if value is None:
        return "—"
    text = points(value) + unit
    if isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval:
        text += f" [{points(interval[0])}, {points(interval[1])}]"
    return text


def headline_changes(credit: bool) -> list[str]:
    """The changes a front is judged by first: ROC AUC for credit studies (ranking),
    F1 then accuracy otherwise."""
    return ["roc_auc_drop"] if credit else ["f1_drop", "accuracy_drop"]


SHORT_SCORE_NAMES = {"roc_auc": "AUC", "accuracy": "acc", "f1": "F1"}


def short_change_label(name: str) -> str:
    """`roc_auc_drop` → `AUC drop` (for column headers)."""
    label = change_label(name)
    score, _, kind = label.rpartition(" ")
    return f"{SHORT_SCORE_NAMES.get(score, score)} {kind}" if score else label


def seeds_summary(runs: dict, names: list[str]) -> str:
    """`3 seeds (0, 1, 2): AUC drop mean ± sd +1.20 ± 0.30 pt on validation, +0.80 ±
    0.50 pt on test; the mean is within the limits` from a seeds record."""
    seeds = runs.get("seeds") or [r.get("seed") for r in runs.get("runs", [])]
    if runs.get("note"):  # the teacher: nothing to train again
        return f"1 run only ({runs['note']})"
    summary = runs.get("summary") or {}
    parts = []
    for name in names:
        shown = [
            f"{points(stat['mean'])} ± {100 * stat['sd']:.2f} pt on {SPLIT_NAMES.get(split)}"
            for split in ("valid", "test")
            if isinstance(stat := (summary.get(split) or {}).get(name), dict)
            and stat.get("mean") is not None
            and stat.get("sd") is not None
        ]
        if shown:
            parts.append(f"{short_change_label(name)} mean ± sd " + ", ".join(shown))
    text = f"{len(seeds)} seeds ({', '.join(str(s) for s in seeds)})"
    if parts:
        text += ": " + "; ".join(parts)
    within = runs.get("within_limits")
    if within is True:
        text += "; the mean is within the limits"
    elif within is False:
        broken = "; ".join(str(b) for b in runs.get("broken") or ())
        text += "; the mean breaks a limit" + (f" ({broken})" if broken else "")
    if runs.get("shipped_seed") is not None:
        text += f"; the exported model is seed {runs['shipped_seed']}'s"
    return text


def _scores(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {value:.4f}"
        for name, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    )


def _changes(changes: dict[str, float], intervals: dict | None) -> str:
    return ", ".join(
        f"{change_label(name)} "
        + change_with_interval(value, (intervals or {}).get(name), unit=" pts")
        for name, value in sorted(changes.items())
        if value is not None
    )


def completed_trial_note(
    trial_number: int,
    recipe_summary: str,
    passes: list[str],
    metrics: dict[str, float],
    drops: dict[str, float],
    measurement: dict[str, Any],
    constraints: dict[str, float],
    *,
    held_out: dict | None = None,
    intervals: dict | None = None,
    search_split: dict | None = None,
    constraint_mode: dict | None = None,
) -> str:
    """Markdown for the dashboard's trial note: the pass chain, then the measurements.

    `metrics` and `drops` are the scores the search saw (`search_split`: the validation
    split), with `intervals` around the drops; `held_out` is the test split scored apart
    and never used for choosing; `constraint_mode` says what a limit was compared with.
    Each of these may be None (trials stored before they were recorded): its line is
    left out or worded without it.

    A latency stored as noisy (see `Measurement`) gets a line saying so; measurements
    stored before noise was recorded read as quiet."""
    attempts = measurement.get("attempts", 1)
    remeasured = f", least noisy of {attempts} attempts" if attempts > 1 else ""
    lines = [
        f"### Trial {trial_number}: {recipe_summary}",
        "",
        "**Pass chain**",
        "",
        *[f"{i}. {step}" for i, step in enumerate(passes, start=1)],
        "",
        "**Measured on the target**",
        "",
        f"- latency p50 {measurement['latency_p50_ms']:.3f} ms, p90 "
        f"{measurement['latency_p90_ms']:.3f} ms, CV {measurement['latency_cv']:.1%} "
        f"({measurement['repeats']} runs after {measurement['warmup']} warm-up{remeasured}; "
        f"batch {measurement['batch_size']}, {measurement['threads']} thread(s), "
        f"{measurement['provider']}, machine {measurement['machine_id']})",
    ]
    if measurement.get("noise_reason"):
        lines.append(f"- **noisy latency**: {measurement['noise_reason']}")
    elif measurement.get("noisy"):
        cvs = ", ".join(f"{cv:.0%}" for cv in measurement.get("attempt_cvs", ()))
        limit = measurement.get("max_cv")
        lines.append(
            f"- **noisy latency**: the timings stayed spread wider than the limit"
            f"{f' (CV {limit:.0%})' if limit is not None else ''} in all {attempts} "
            f"attempt(s) (CVs {cvs or 'not recorded'}); something else was using the "
            "machine, so this p50 may not rank the trial against close ones"
        )
    lines += [f"- model size {measurement['size_bytes'] / 1024:.1f} KB", ""]
    lines += _scores_lines(metrics, drops, intervals, search_split, held_out)
    if constraints:
        reason = infeasible_reason(constraints, constraint_mode)
        verdict = f"**infeasible**: {reason}" if reason else "feasible"
        limits = ", ".join(
            f"{constraint_label(name, constraint_mode)} {value:+.4f}"
            for name, value in constraints.items()
        )
        judged = constraint_mode_label(constraint_mode)
        on = f"; judged on the {judged} of each validation change" if judged else ""
        lines.append(f"- constraints ({limits}; feasible when ≤ 0{on}): {verdict}")
    return "\n".join(lines) + "\n"


def _scores_lines(
    metrics: dict[str, Any],
    drops: dict[str, float],
    intervals: dict | None,
    search_split: dict | None,
    held_out: dict | None,
) -> list[str]:
    """The note's scores: what the search saw, then what was held out from it."""
    split = split_label(search_split)
    interval = interval_label(search_split)
    lines = [
        f"**Scores** — {CHANGE_CONVENTION}",
        "",
        f"- {'**' + split + '**' if split else 'scores'} (what the search, the constraints "
        "and the selection see): " + _scores(metrics),
        "- versus the teacher"
        + (f" [{interval}]" if interval and intervals else "")
        + ": "
        + (_changes(drops, intervals) or "—"),
    ]
    if held_out:
        held_interval = interval_label(held_out)
        lines += [
            f"- **held out, never used for choosing**: {split_label(held_out) or 'held-out split'}"
            ": " + (_scores(held_out.get("metrics") or {}) or "—"),
            "- held out versus the teacher"
            + (f" [{held_interval}]" if held_interval else "")
            + ": "
            + (_changes(held_out.get("changes") or {}, held_out.get("intervals")) or "—"),
        ]
    return lines


def check_port_free(host: str, port: int) -> None:
    """Bind once before starting, so a busy port is one clear message, not a traceback.
    With SO_REUSEADDR, as the server itself binds: connections of a dashboard stopped a
    moment ago (TIME_WAIT) do not make the port look taken; a listening one still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"--port: {host}:{port} is already in use (another dashboard?); "
                    "pick another with --port, e.g. --port 8081"
                ) from None
            raise UserError(f"--host/--port: cannot listen on {host}:{port}: {error}") from None


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(app: Callable) -> Callable:
    """Wrap a WSGI app so every request that could change something is refused (403).

    optuna-dashboard lets anyone who reaches it rename or delete studies, tell trials,
    edit notes and delete artifacts; a dashboard shown to a wider audience must not.
    """

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        body = b"this dashboard is read-only (started with --read-only); nothing was changed\n"
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


def dashboard_best_trials(trials: Sequence[Any], directions: Sequence[Any]) -> list[Any]:
    """optuna-dashboard's `best_trials` (the complete trials no other complete trial
    dominates, in the given order; equal values all kept), in O(n log n).

    optuna-dashboard 0.21 computes it pairwise for three objectives or more
    (`_pareto_front._get_pareto_front_trials_nd`, "TODO: Optimize"): 0.15 s at 1,000
    trials of ours, 14.5 s at 10,000, on every study page request."""
    from optuna.trial import TrialState

    from autocompress.pareto import pareto_front

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    values = [list(t.values) for t in complete]
    names = [d.name.lower() for d in directions]
    return [complete[i] for i in pareto_front(values, names)]


def use_fast_best_trials() -> bool:
    """Have optuna-dashboard's study page compute `best_trials` with
    `dashboard_best_trials`; whether it could (optuna-dashboard is pinned to 0.21, where
    the study page calls `_app.get_pareto_front_trials(trials=, directions=)`)."""
    from optuna_dashboard import _app

    if not callable(getattr(_app, "get_pareto_front_trials", None)):
        return False
    _app.get_pareto_front_trials = dashboard_best_trials  # type: ignore[attr-defined]
    return True


def serve(
    storage_url: str,
    artifact_dir: Path | None,
    host: str,
    port: int,
    *,
    writable: bool,
    only_front: str | None = None,
) -> None:
    """Run optuna-dashboard on the study database until interrupted, its trials read
    in bulk (`dashboard_storage.BulkReadStorage`) and its front found in O(n log n)
    (`use_fast_best_trials`); with `only_front` (a study name), on
    a view in which that study lists only its front and its teacher
    (`dashboard_front.FrontOnlyStorage`): large studies open in seconds."""
    from wsgiref.simple_server import make_server

    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from autocompress.dashboard_storage import BulkReadStorage
    from autocompress.store import optuna_storage

    store = (
        FileSystemArtifactStore(str(artifact_dir))
        if artifact_dir is not None and artifact_dir.is_dir()
        else None
    )
    use_fast_best_trials()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API warnings from the dashboard
        storage = BulkReadStorage(optuna_storage(storage_url))
        if only_front is None:
            app = optuna_dashboard.wsgi(storage, artifact_store=store)
        else:
            from autocompress.dashboard_front import (
                FrontOnlyStorage,
                guard_whole_study,
                snapshot_front_numbers,
            )

            view = FrontOnlyStorage(
                storage, only_front, snapshot_front_numbers(storage_url, only_front)
            )
            app = guard_whole_study(
                optuna_dashboard.wsgi(view, artifact_store=store), view.study_id
            )
        with make_server(host, port, app if writable else read_only(app)) as server:
            server.serve_forever()
