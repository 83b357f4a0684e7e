"""What optuna-dashboard shows of a study, and the dashboard server itself.

Every trial carries: its objective values under their names, feasibility in the
form the dashboard reads, its model files, recipe and metrics as artifacts, and a
short markdown note saying what the pass chain did and what it measured.
"""

from __future__ import annotations

import errno
import json
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import UserError

# optuna-dashboard 0.21 reads feasibility only from this list (Optuna's pre-5.0 form);
# Optuna itself reads both forms, so the list alone keeps the two in agreement.
DASHBOARD_CONSTRAINTS_KEY = "constraints"
CONSTRAINT_NAMES_ATTR = "constraint_names"
REPORT_ARTIFACTS_ATTR = "report_artifacts"


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
    from optuna.artifacts import upload_artifact

    ids: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="autocompress-report-") as workdir:
        for name, content in files.items():
            path = Path(workdir) / name
            if name.endswith((".yaml", ".yml")):
                path.write_text(yaml.safe_dump(content, sort_keys=False))
            else:
                path.write_text(json.dumps(content, indent=2, default=str))
            ids[name] = upload_artifact(
                artifact_store=artifact_store, file_path=str(path), study_or_trial=trial
            )
    trial.set_user_attr(REPORT_ARTIFACTS_ATTR, ids)


def save_trial_note(trial: Any, body: str) -> None:
    from optuna_dashboard import save_note

    save_note(trial, body)


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
        "Scores on the test split; latency p50 per batch of "
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


def constraint_label(name: str) -> str:
    """`accuracy_drop` (drop minus limit, as stored) said as what it is."""
    label = change_label(name)
    return f"{label} − limit" if label != name else name


def failed_constraints(constraints: dict[str, float]) -> list[str]:
    """The names of the constraints over their limit, e.g. `["f1_drop"]`."""
    return [name for name, value in constraints.items() if value > 0]


def infeasible_reason(constraints: dict[str, float]) -> str:
    """`f1 drop over its limit` (or several): which limits a trial broke; `` if none."""
    failed = [change_label(name) for name in failed_constraints(constraints)]
    if not failed:
        return ""
    return f"{' and '.join(failed)} over {'its limit' if len(failed) == 1 else 'their limits'}"


def completed_trial_note(
    trial_number: int,
    recipe_summary: str,
    passes: list[str],
    metrics: dict[str, float],
    drops: dict[str, float],
    measurement: dict[str, Any],
    constraints: dict[str, float],
) -> str:
    """Markdown for the dashboard's trial note: the pass chain, then the measurements.

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
    if measurement.get("noisy"):
        cvs = ", ".join(f"{cv:.0%}" for cv in measurement.get("attempt_cvs", ()))
        limit = measurement.get("max_cv")
        lines.append(
            f"- **noisy latency**: the timings stayed spread wider than the limit"
            f"{f' (CV {limit:.0%})' if limit is not None else ''} in all {attempts} "
            f"attempt(s) (CVs {cvs or 'not recorded'}); something else was using the "
            "machine, so this p50 may not rank the trial against close ones"
        )
    lines += [
        f"- model size {measurement['size_bytes'] / 1024:.1f} KB",
        "- scores on the held-out split: "
        + ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())),
        "- versus the teacher: "
        + ", ".join(
            f"{change_label(name)} {100 * value:+.2f} pts" for name, value in sorted(drops.items())
        ),
    ]
    if constraints:
        reason = infeasible_reason(constraints)
        verdict = f"**infeasible**: {reason}" if reason else "feasible"
        limits = ", ".join(
            f"{constraint_label(name)} {value:+.4f}" for name, value in constraints.items()
        )
        lines.append(f"- constraints ({limits}; feasible when ≤ 0): {verdict}")
    return "\n".join(lines) + "\n"


def check_port_free(host: str, port: int) -> None:
    """Bind once before starting, so a busy port is one clear message, not a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
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


def serve(
    storage_url: str, artifact_dir: Path | None, host: str, port: int, *, writable: bool
) -> None:
    """Run optuna-dashboard on the study database until interrupted."""
    from wsgiref.simple_server import make_server

    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from autocompress.store import optuna_storage

    store = (
        FileSystemArtifactStore(str(artifact_dir))
        if artifact_dir is not None and artifact_dir.is_dir()
        else None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API warnings from the dashboard
        app = optuna_dashboard.wsgi(optuna_storage(storage_url), artifact_store=store)
        with make_server(host, port, app if writable else read_only(app)) as server:
            server.serve_forever()
