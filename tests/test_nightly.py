"""Nightly re-optimization on the credit study: warm start, champion / challenger,
rollback, and the database lock, with real studies, a real registry and real processes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect, text

from autocompress.nightly import Contender, decide, run_nightly
from autocompress.registry import Registry
from autocompress.store import optuna_storage
from tests.conftest import autocompress_cli, tiny_study_dict, write_study


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nightly")
    return write_study(folder, tiny_study_dict(folder, n_trials=2, study_name="credit"))


def storage_url(study_file: Path) -> str:
    return f"sqlite:///{study_file.parent / 'study.db'}"


def nightly_studies(study_file: Path) -> list[str]:
    names = optuna.get_all_study_names(optuna_storage(storage_url(study_file)))
    return sorted(n for n in names if n.startswith("credit.nightly."))


def test_two_nights_warm_start_champion_challenger_and_rollback(
    study_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(study_file.parent)
    first = run_nightly(study_file, rounds=3)
    assert first.previous_champion is None and first.decision.replace
    assert first.champion.version == first.challenger.version
    assert first.report.html.is_file() and first.report.png.stat().st_size > 10_000
    assert "champion set" in first.report.html.read_text()

    second = run_nightly(study_file, rounds=5)
    storage = optuna_storage(storage_url(study_file))
    night1 = optuna.load_study(study_name=first.study_name, storage=storage)
    night2 = optuna.load_study(study_name=second.study_name, storage=storage)
    # Warm start: right after the teacher come last night's front members (teacher
    # excluded), then the champion's recipe unless it is one of them.
    from autocompress.front import compute_front

    previous_front = [m.params for m in compute_front(night1) if not m.is_teacher]
    warm = [night2.trials[n] for n in second.warm_started]
    assert second.warm_started == list(range(1, len(warm) + 1))
    assert [t.params for t in warm][: len(previous_front)] == previous_front
    assert {t.user_attrs["role"] for t in warm} <= {"previous_front", "champion"}

    # The champion changes only when the measurements justify it.
    challenger = second.decision
    registry = Registry(storage_url(study_file))
    if challenger.replace:
        assert registry.champion("credit").version == second.challenger.version
        assert "faster" in challenger.reason or "accuracy" in challenger.reason, challenger
    else:
        assert registry.champion("credit").version == first.champion.version
        assert "noise" in challenger.reason or "constraints" in challenger.reason, challenger
        registry.promote(second.challenger.version, reason="test: deploy the challenger")
    page = second.report.html.read_text()
    assert "champion kept" in page or challenger.replace
    # The teacher may itself be the champion (tiny studies): one row then has both roles.
    roles = " ".join(re.findall(r'<tr class="([^"]*)" data-trial=', page)).split()
    assert "champion" in roles and "teacher" in roles, roles

    # Rollback restores the previous champion in one command.
    process = autocompress_cli(
        "registry", "rollback", "--storage", storage_url(study_file), cwd=study_file.parent
    )
    assert process.returncode == 0, process.stderr
    assert registry.champion("credit").version == first.champion.version


def test_a_second_nightly_while_one_runs_exits_75_and_changes_nothing(study_file: Path) -> None:
    before = nightly_studies(study_file)
    running = subprocess.Popen(
        [sys.executable, "-m", "autocompress", "nightly", str(study_file), "--n-trials", "8"],
        cwd=study_file.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        engine = create_engine(storage_url(study_file))
        deadline = time.monotonic() + 120
        while True:
            with engine.connect() as connection:  # the first run may not have made them yet
                tables = inspect(connection).get_table_names()
                held = {"autocompress_locks", "autocompress_model_versions"} <= set(tables) and (
                    connection.execute(
                        text("SELECT owner FROM autocompress_locks WHERE name = 'nightly:credit'")
                    ).scalar()
                )
            if held:
                break
            assert running.poll() is None, running.stderr.read()
            assert time.monotonic() < deadline, "the first nightly never took the lock"
            time.sleep(0.2)
        versions_before = len(Registry(storage_url(study_file)).versions())
        second = autocompress_cli("nightly", str(study_file), cwd=study_file.parent)
        assert second.returncode == 75, second.stderr
        assert "nightly:credit" in second.stderr and held in second.stderr
        assert "Traceback" not in second.stderr
        assert len(Registry(storage_url(study_file)).versions()) == versions_before
    finally:
        out, err = running.communicate(timeout=600)
    assert running.returncode == 0, err
    assert "champion" in out and "report:" in out
    # Only the first run made a study; the lock is gone afterwards.
    assert len(nightly_studies(study_file)) == len(before) + 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM autocompress_locks")).scalar() == 0


def test_nightly_needs_a_ranking_policy(study_file: Path, tmp_path: Path) -> None:
    definition = tiny_study_dict(tmp_path, export={"policy": "trial:1"})
    path = write_study(tmp_path, definition)
    process = autocompress_cli("nightly", str(path), cwd=tmp_path)
    assert process.returncode == 2
    assert "export.policy" in process.stderr and "need a ranking policy" in process.stderr
    assert "fastest, most_accurate" in process.stderr and "best:METRIC" in process.stderr
    assert not (tmp_path / "study.db").exists()


def test_nightly_on_changed_data_retrains_the_teacher_and_rescores_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Night 2 gets today's file through --data, in which every label has flipped (an
    extreme drift): the champion, still right about yesterday's world, must fail the
    constraints on today's test split and be replaced by a student of today's teacher."""
    import pandas as pd

    from autocompress.api import TEACHER_ATTR
    from autocompress.tasks.data_files import resolve_data_file

    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=2, study_name="credit"))
    first = run_nightly(path, rounds=3)

    frame = pd.read_csv(resolve_data_file("embedded:germancredit"))
    frame["creditability"] = frame["creditability"].map({"good": "bad", "bad": "good"})
    today = tmp_path / "germancredit-today.csv"
    frame.to_csv(today, index=False)
    process = autocompress_cli("nightly", str(path), "--data", str(today), "--rounds", "3")
    assert process.returncode == 0, process.stderr

    storage = optuna_storage(storage_url(path))
    night1, night2 = (
        optuna.load_study(study_name=name, storage=storage) for name in nightly_studies(path)
    )
    assert night2.study_name != first.study_name == night1.study_name
    teachers = [s.user_attrs[TEACHER_ATTR] for s in (night1, night2)]
    assert teachers[0]["fingerprint"] != teachers[1]["fingerprint"]  # retrained on today's file
    champion = Registry(storage_url(path)).champion("credit")
    assert champion.source_study == night2.study_name  # replaced
    assert "no longer meets the study's constraints today" in process.stdout.replace("\n", " ")
    page = (tmp_path / "reports" / night2.study_name / "report.html").read_text()
    assert "champion: validation accuracy" in page and "feasible False" in page


def contender(rounds: list[float], accuracy: float = 0.75, feasible: bool = True) -> Contender:
    return Contender("x", {"accuracy": accuracy, "f1": 0.7}, feasible, rounds)


@pytest.mark.parametrize(
    ("policy", "challenger", "champion", "replace", "why"),
    [
        ("fastest", contender([1.0, 1.1, 1.2]), None, True, "no champion yet"),
        ("fastest", contender([0.8, 0.9, 1.05]), contender([1.0, 1.1, 1.2]), False, "noise"),
        ("fastest", contender([0.8, 0.85, 0.9]), contender([1.0, 1.1, 1.2]), True, "faster"),
        (
            "fastest",
            contender([0.5, 0.5, 0.5], feasible=False),
            contender([1.0, 1.1, 1.2]),
            False,
            "does not meet",
        ),
        (
            "fastest",
            contender([2.0, 2.0, 2.0]),
            contender([1.0, 1.0, 1.0], feasible=False),
            True,
            "no longer meets",
        ),
        ("most_accurate", contender([1.0] * 3, 0.755), contender([1.0] * 3, 0.75), True, "+1 of"),
        ("most_accurate", contender([1.0] * 3, 0.75), contender([1.0] * 3, 0.75), False, "single"),
    ],
)
def test_decide_replaces_only_beyond_noise(
    policy: str, challenger: Contender, champion: Contender | None, replace: bool, why: str
) -> None:
    decision = decide(policy, challenger, champion, n_rows=200)
    assert decision.replace is replace
    assert why in decision.reason


def test_nightly_needs_a_target_that_runs_exports_again(tmp_path: Path) -> None:
    space = {"pruning_ratio": {"low": 0.0, "high": 0.5}, "bits": {"choices": [32, 8]}}
    definition = tiny_study_dict(
        tmp_path, search_space=space, target={"runtime": "torch-cuda", "batch_size": 32}
    )
    path = write_study(tmp_path, definition)
    process = autocompress_cli("nightly", str(path), cwd=tmp_path)
    assert process.returncode == 2, process.stderr
    assert "target.runtime" in process.stderr and "'torch-cuda' cannot run an exported" in (
        process.stderr
    )
    assert "use onnxruntime" in process.stderr
    with create_engine(storage_url(path)).connect() as connection:  # the lock was released
        assert connection.execute(text("SELECT count(*) FROM autocompress_locks")).scalar() == 0
    assert not [n for n in optuna.get_all_study_names(storage_url(path)) if ".nightly." in n]
