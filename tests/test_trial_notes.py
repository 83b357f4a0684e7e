"""Where trial notes are kept: every trial's as its `note.md` artifact, the dashboard's
note panel (study system attributes, which every later note and every study page read
whole) only for the teacher and the trials on the front when they completed (issue 16).
A real two-start study on the embedded German credit data."""

from __future__ import annotations

import math
import re

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard._note import SYSTEM_ATTR_MAX_LENGTH, get_note_from_system_attrs

from autocompress import run_study
from autocompress.api import StudyResult
from tests.conftest import note_md, tiny_study_dict, write_study
from tests.test_dashboard import noted_on_the_dashboard

# optuna-dashboard's keys of a trial's note: `dashboard:{trial_id}:note_ver` and
# `dashboard:{trial_id}:note_str:{i}`, one per 2,045 characters (the study's own note
# has no trial id).
TRIAL_NOTE_KEY = re.compile(r"dashboard:(\d+):note_(ver|str:\d+)$")


@pytest.fixture(scope="module")
def two_starts(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, FrozenTrial]:
    """Two starts of a study (two objectives, no accuracy loss allowed: a small front),
    the second beginning with a student of the first proposed again; that student."""
    folder = tmp_path_factory.mktemp("notes")
    definition = tiny_study_dict(
        folder,
        n_trials=4,
        objectives={"metrics": ["accuracy", "latency_p50_ms"]},
        constraints={"max_accuracy_drop": 0.0},
    )
    path = write_study(folder, definition)
    first = run_study(path, progress=False)
    student = next(t for t in first.study.trials if t.state == TrialState.COMPLETE and t.params)
    first.study.enqueue_trial(student.params)  # the second start prunes it unrun
    return run_study(path, progress=False), student


def dashboard_notes(study: optuna.Study) -> dict[int, list[str]]:
    """The keys of every trial note in the study's system attributes, by trial number."""
    number = {t._trial_id: t.number for t in study.get_trials(deepcopy=False)}
    notes: dict[int, list[str]] = {}
    for key in study._storage.get_study_system_attrs(study._study_id):
        if match := TRIAL_NOTE_KEY.match(key):
            notes.setdefault(number[int(match[1])], []).append(key)
    return notes


def test_every_trial_has_a_note_md_and_the_dashboard_notes_only_the_front(
    two_starts: tuple[StudyResult, FrozenTrial],
) -> None:
    result, student = two_starts
    study, artifacts = result.study, result.loaded.config.artifacts_path
    trials = study.trials
    assert len(trials) == 8
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}

    # Every trial, completed or pruned, has its full note as its note.md.
    for trial in trials:
        assert note_md(artifacts, trial).startswith(f"### Trial {trial.number}: ")
        if trial.state == TrialState.COMPLETE:
            assert "Pass chain" in note_md(artifacts, trial)
    twin = trials[4]
    assert twin.state == TrialState.PRUNED
    reason = twin.user_attrs["pruned_reason"]
    assert reason.startswith(f"same params as trial {student.number} ")
    assert reason in note_md(artifacts, twin)

    # The note panel: the teacher and the trials on the front when they completed
    # (across both starts: the second reads the first's front), each with its note.md.
    noted = set(dashboard_notes(study))
    assert noted == noted_on_the_dashboard(study)
    assert twin.number not in noted
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for number in noted:
        shown = get_note_from_system_attrs(attrs, trials[number]._trial_id)["body"]
        assert shown == note_md(artifacts, trials[number])


def test_the_study_system_attributes_grow_with_the_front_not_the_trials(
    two_starts: tuple[StudyResult, FrozenTrial],
) -> None:
    result, _ = two_starts
    study, artifacts = result.study, result.loaded.config.artifacts_path
    notes = dashboard_notes(study)
    # One version key and one key per 2,045 characters for each trial ever on the
    # front (and the teacher); none for the pruned and the dominated trials.
    for number, keys in notes.items():
        chunks = math.ceil(len(note_md(artifacts, study.trials[number])) / SYSTEM_ATTR_MAX_LENGTH)
        assert len(keys) == 1 + chunks
    assert len(notes) < len(study.trials)
    # Nothing else in them is kept per trial: the study's own note and Optuna's names.
    others = [
        key
        for key in study._storage.get_study_system_attrs(study._study_id)
        if not TRIAL_NOTE_KEY.match(key)
    ]
    assert all(key.startswith(("dashboard:note_", "study:")) for key in others), others
