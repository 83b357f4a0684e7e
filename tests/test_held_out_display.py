"""What a validator reads: validation scores (what the search saw), held-out test changes
with their intervals, the constraint mode and the seeds, in the CLI front, the dashboard
note, the HTML report and metrics.json; trials stored before these keep rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from rich.console import Console

from autocompress.cli import study as study_cli
from autocompress.config import load_study_config
from autocompress.dashboard import completed_trial_note, seed_runs
from autocompress.export import export_trial
from autocompress.front import FrontMember
from autocompress.report import write_report
from tests.conftest import tiny_study_dict, write_study

SEARCH_SPLIT = {"split": "valid", "rows": 200, "confidence": 0.95, "resamples": 1000}
UPPER_BOUND = {"kind": "upper_bound", "confidence": 0.95}
MEASUREMENT = {
    "latency_p50_ms": 0.31,
    "latency_p90_ms": 0.42,
    "latency_cv": 0.03,
    "repeats": 5,
    "warmup": 2,
    "batch_size": 32,
    "threads": 1,
    "provider": "CPUExecutionProvider",
    "machine_id": "m1",
    "size_bytes": 4096,
}
SEEDS = {
    "seeds": [0, 1, 2],
    "runs": [{"seed": s, "metrics": {}, "changes": {}, "held_out": {}} for s in (0, 1, 2)],
    "summary": {
        "valid": {"roc_auc_drop": {"mean": 0.011, "sd": 0.003}},
        "test": {"roc_auc_drop": {"mean": 0.014, "sd": 0.005}},
    },
    "within_limits": False,
    "broken": ["roc_auc drop mean 0.024 > limit 0.02"],
    "shipped_seed": 0,
}


def held_out(auc_drop: float, low: float, high: float) -> dict:
    return {
        "split": "test",
        "rows": 180,
        "metrics": {"accuracy": 0.71, "roc_auc": 0.78},
        "changes": {"roc_auc_drop": auc_drop, "accuracy_drop": 0.004},
        "intervals": {"roc_auc_drop": [low, high], "accuracy_drop": [-0.02, 0.03]},
        "confidence": 0.95,
        "resamples": 1000,
        "seed": 0,
    }


def attrs(number: int, auc: float, latency: float, *, new: bool = True, **extra: object) -> dict:
    """A completed credit trial's user attributes: the new schema, or (`new=False`) as
    stored before held-out scoring."""
    recorded = {
        "metrics": {"accuracy": 0.74, "f1": 0.6, "roc_auc": auc, "ks": 0.45, "brier": 0.17},
        "measurement": {**MEASUREMENT, "latency_p50_ms": latency},
        "accuracy_drop": 0.01,
        "f1_drop": 0.02,
        "roc_auc_drop": 0.8 - auc,
        "brier_increase": 0.003,
        "num_parameters": 1000,
        "recipe_summary": f"recipe {number}",
        "recipe": {"bits": 8},
        "student_spec": {"hidden_sizes": [8]},
        **extra,
    }
    if new:
        recorded |= {
            "search_split": SEARCH_SPLIT,
            "change_intervals": {
                "roc_auc_drop": [0.8 - auc - 0.02, 0.8 - auc + 0.016],
                "accuracy_drop": [-0.01, 0.03],
            },
            "held_out": held_out(0.0123, -0.0101, 0.0352),
            "constraint_mode": UPPER_BOUND,
        }
    return recorded


@pytest.fixture
def study() -> optuna.Study:
    """Teacher 0, students 1 (selected, re-trained with seeds) and 2, old-style 3,
    infeasible 4: all complete."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["roc_auc", "latency_p50_ms"])
    rows = [
        (0, 0.80, 2.0, True, {"role": "teacher"}),
        (1, 0.79, 0.5, True, {}),
        (2, 0.78, 0.3, True, {}),
        (3, 0.785, 0.4, False, {}),
        (4, 0.70, 0.1, True, {}),
    ]
    for number, auc, latency, new, extra in rows:
        study.add_trial(
            optuna.trial.create_trial(
                values=[auc, latency],
                user_attrs=attrs(number, auc, latency, new=new, **extra),
                constraints={"roc_auc_drop": 0.05 if number == 4 else -0.01},
            )
        )
    study.set_user_attr("autocompress:seeds:1", SEEDS)
    return study


def printed(members: list[FrontMember], teacher: FrontMember | None, **kwargs: object) -> str:
    console = Console(record=True, width=200)
    original, study_cli.console = study_cli.console, console
    try:
        study_cli.print_front(members, teacher, "front", **kwargs)
    finally:
        study_cli.console = original
    return console.export_text()


def member(trial: optuna.trial.FrozenTrial) -> FrontMember:
    """FrontMember as the core builds it: the trial's new records beside its metrics."""
    base = FrontMember.from_trial(trial)
    keys = ("held_out", "change_intervals", "search_split", "constraint_mode")
    return FrontMember(
        base.trial_number,
        base.params,
        {**base.metrics, **{key: trial.user_attrs.get(key) for key in keys}},
    )


def line_of(text: str, trial: int) -> str:
    return next(row for row in text.splitlines() if re.match(rf"│ +{trial} (│|\()", row))


def test_front_table_shows_validation_scores_and_held_out_intervals(study: optuna.Study) -> None:
    trials = study.get_trials()
    members = [member(trials[n]) for n in (1, 2, 3)]
    text = printed(members, member(trials[0]), seeds=seed_runs(study.user_attrs))
    words = " ".join(text.replace("│", " ").split())
    assert "test AUC drop" in text and "[95% CI]" in text
    # The held-out change in points with its interval, on the row of its trial.
    assert "+1.23 [-1.01, +3.52]" in line_of(text, 1)
    assert "—" in line_of(text, 3), "a trial stored before held-out scoring shows —"
    assert "scores on the validation split (200 rows): what the search" in words
    assert "test split (180 rows), held out: never used for choosing" in words
    assert "95% paired bootstrap interval, 1,000 resamples" in words
    assert "drop = teacher − student" in words
    assert "constraints judged on the upper bound of the 95% interval" in words
    assert "trial 1 re-trained with 3 seeds (0, 1, 2)" in words
    assert "+1.10 ± 0.30 pt on validation, +1.40 ± 0.50 pt on test" in words
    assert "the mean breaks a limit (roc_auc drop mean 0.024 > limit 0.02)" in words
    point = FrontMember(1, {}, {**members[0].metrics, "constraint_mode": {"kind": "point"}})
    assert "constraints judged on the point estimate" in printed([point], None)


def test_text_front_shows_f1_and_accuracy_held_out_and_old_members_degrade() -> None:
    metrics = {
        "accuracy": 0.9,
        "f1": 0.88,
        "latency_p50_ms": 1.0,
        "latency_p90_ms": 1.2,
        "size_bytes": 2048,
        "recipe": "r",
        "search_split": {**SEARCH_SPLIT, "rows": 1500},
        "held_out": {
            "split": "test",
            "rows": 7600,
            "changes": {"f1_drop": 0.0042, "accuracy_drop": -0.0031},
            "intervals": {"f1_drop": [0.0011, 0.0075], "accuracy_drop": [-0.006, 0.0]},
            "confidence": 0.9,
            "resamples": 500,
        },
    }
    text = printed([FrontMember(5, {}, metrics)], None)
    assert "test F1 drop" in text and "test acc drop" in text and "[90% CI]" in text
    row = line_of(text, 5)
    assert "+0.42 [+0.11, +0.75]" in row and "-0.31 [-0.60, +0.00]" in row
    assert "AUC drop" not in text
    old = {k: v for k, v in metrics.items() if k not in ("search_split", "held_out")}
    plain = printed([FrontMember(5, {}, old)], None)
    for absent in ("test F1", "validation", "held out", "constraints judged", "CI"):
        assert absent not in plain


def test_reference_rows_say_they_are_not_on_the_validation_split() -> None:
    metrics = {
        "accuracy": 0.9,
        "f1": 0.88,
        "roc_auc": 0.8,
        "ks": 0.4,
        "latency_p50_ms": 1.0,
        "latency_p90_ms": 1.2,
        "size_bytes": 2048,
        "search_split": SEARCH_SPLIT,
    }
    baseline = {
        "metrics": {"accuracy": 0.7, "f1": 0.6, "roc_auc": 0.79},
        "measurement": {"latency_p50_ms": 2.0, "latency_p90_ms": 3.0, "size_bytes": 9000},
    }
    words = " ".join(
        printed([FrontMember(1, {}, metrics)], None, baselines={"lightgbm": baseline})
        .replace("│", " ")
        .split()
    )
    assert "scored on the test split, not on the rows' validation split" in words


def test_note_separates_validation_from_held_out_and_states_the_mode(
    study: optuna.Study,
) -> None:
    trial = study.get_trials()[1]
    a = trial.user_attrs
    drops = {"accuracy_drop": a["accuracy_drop"], "roc_auc_drop": a["roc_auc_drop"]}
    note = completed_trial_note(
        trial.number,
        a["recipe_summary"],
        ["int8"],
        a["metrics"],
        drops,
        a["measurement"],
        {"accuracy_drop": -0.01, "roc_auc_drop": 0.004},
        held_out=a["held_out"],
        intervals=a["change_intervals"],
        search_split=a["search_split"],
        constraint_mode=a["constraint_mode"],
    )
    assert "held-out split:" not in note, "the validation scores are not called held out"
    validation = next(line for line in note.splitlines() if "validation split" in line)
    assert "(200 rows)" in validation and "what the search" in validation
    assert "roc_auc 0.7900" in validation
    changes = next(line for line in note.splitlines() if line.startswith("- versus the teacher"))
    assert "95% paired bootstrap interval, 1,000 resamples" in changes
    assert "roc_auc drop +1.00 pts [-1.00, +2.60]" in changes
    held = next(line for line in note.splitlines() if "never used for choosing" in line)
    assert "test split (180 rows)" in held and "roc_auc 0.7800" in held
    held_changes = next(line for line in note.splitlines() if "held out versus" in line)
    assert "roc_auc drop +1.23 pts [-1.01, +3.52]" in held_changes
    constraints = next(line for line in note.splitlines() if line.startswith("- constraints"))
    assert "judged on the upper bound of the 95% interval" in constraints
    assert "roc_auc drop (95% upper bound) − limit +0.0040" in constraints
    assert "**infeasible**: roc_auc drop (95% upper bound) over its limit" in constraints


def test_note_of_an_old_trial_keeps_rendering() -> None:
    note = completed_trial_note(
        3, "old", [], {"accuracy": 0.7}, {"accuracy_drop": 0.01}, MEASUREMENT, {"x_drop": -0.1}
    )
    assert "scores (what the search" in note and "accuracy drop +1.00 pts" in note
    assert "[" not in note.split("**Scores**", 1)[1], "no interval where none was recorded"
    assert "held out" not in note and "upper bound" not in note
    assert "x drop − limit -0.1000; feasible when ≤ 0): feasible" in note


def test_report_states_what_was_measured(study: optuna.Study, tmp_path: Path) -> None:
    page = write_report(study, tmp_path / "r", title="t", selected_trial=1).html.read_text()
    assert "held-out AUC drop, pt [95% CI]" in page
    row = page.split('data-trial="1">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num interval">+1.23 [-1.01, +3.52]</td>' in row
    old_row = page.split('data-trial="3">', 1)[1].split("</tr>", 1)[0]
    assert old_row.endswith('<td class="num interval">—</td>')
    measured = page.split("<h2>What was measured</h2>", 1)[1].split("</ul>", 1)[0]
    text = re.sub(r"<[^>]+>", " ", measured)
    assert "Search and selection: validation split (200 rows)" in text
    assert "Held out: test split (180 rows), scored for 4 of the 5 completed trials" in text
    assert "never used for choosing" in text
    assert "Intervals: 95% paired bootstrap interval, 1,000 resamples" in text
    assert "judged on the upper bound of the 95% interval of each change" in text
    assert "Selection made among 5 completed trial(s) (4 feasible" in text
    assert "Trial 1 (selected) re-trained with 3 seeds (0, 1, 2)" in text
    assert "+1.10 ± 0.30 pt on validation, +1.40 ± 0.50 pt on test" in text
    assert "the mean breaks a limit" in text and "seed 0" in text
    other = write_report(study, tmp_path / "o", title="t", selected_trial=2).html.read_text()
    assert "Trial 2 (selected): not re-trained with more seeds" in other


def test_report_of_an_old_study_says_not_recorded(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number in range(2):
        extra = {"role": "teacher"} if number == 0 else {}
        study.add_trial(
            optuna.trial.create_trial(
                values=[0.8, 1.0 + number], user_attrs=attrs(number, 0.8, 1.0, new=False, **extra)
            )
        )
    page = write_report(study, tmp_path / "r", title="old").html.read_text()
    assert "held-out" not in page.split("<h2>What was measured</h2>", 1)[0]
    measured = page.split("<h2>What was measured</h2>", 1)[1]
    assert "Search and selection: the split is not recorded" in measured
    assert "Held out: not recorded" in measured
    assert "Selection made among 2 completed trial(s)" in measured


def export(study: optuna.Study, tmp_path: Path, number: int, **kwargs: object) -> dict:
    """Export trial `number` with a small stored file and read its metrics.json back."""
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    source = tmp_path / "preprocessing.json"
    source.write_text("{}")
    artifact = upload_artifact(artifact_store=store, file_path=str(source), study_or_trial=study)
    trial = study.get_trials()[number]
    trial = optuna.trial.create_trial(
        values=trial.values, user_attrs={**trial.user_attrs, "artifacts": {source.name: artifact}}
    )
    config = tiny_study_dict(tmp_path, objectives={"metrics": ["roc_auc", "latency_p50_ms"]})
    loaded = load_study_config(write_study(tmp_path, config))
    out = tmp_path / f"export-{number}"
    export_trial(trial, loaded, store, out, "fastest", {}, **kwargs)
    return json.loads((out / "metrics.json").read_text())


def test_metrics_json_says_what_each_number_is(study: optuna.Study, tmp_path: Path) -> None:
    selection = {
        "policy": "fastest",
        "trials_considered": 5,
        "constraint_mode": UPPER_BOUND,
        "seeds": SEEDS,
    }
    metrics = export(study, tmp_path, 1, selection=selection)
    trial = study.get_trials()[1]
    assert metrics["scored_on"] == "valid" and metrics["search_split"] == SEARCH_SPLIT
    assert metrics["metrics"] == trial.user_attrs["metrics"]  # validation, as before
    assert metrics["change_intervals"] == trial.user_attrs["change_intervals"]
    assert metrics["held_out"]["intervals"]["roc_auc_drop"] == [-0.0101, 0.0352]
    assert metrics["constraint_mode"] == UPPER_BOUND
    assert metrics["selection"]["seeds"]["shipped_seed"] == 0
    assert metrics["selection"]["trials_considered"] == 5
    assert metrics["changes_vs_teacher"]["roc_auc_drop"] == pytest.approx(0.01)
    old = export(study, tmp_path, 3)
    assert old["scored_on"] is None and old["held_out"] is None and old["selection"] is None
    assert old["objectives"] == {"roc_auc": 0.785, "latency_p50_ms": 0.4}
