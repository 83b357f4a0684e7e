"""A real optuna-dashboard process on a real study database, read over HTTP and
looked at in headless Chromium.

The screenshot is kept in `test-artifacts/` (see .ci/run). In CI (`AUTOCOMPRESS_CI`)
a missing Chromium is a failure; elsewhere the browser test skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autocompress import run_study
from autocompress.api import TEACHER_ATTR, StudyResult
from autocompress.changes import drops_and_constraints
from autocompress.config import ConstraintsConfig
from autocompress.dashboard import NOTE_FILE, completed_trial_note, named_constraints
from autocompress.front import TEACHER_ROLE, compute_front, front_of, teacher_member
from tests.conftest import REPO, autocompress_cli, empty_database, tiny_study_dict, write_study

TEST_ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyResult, Path]:
    folder = tmp_path_factory.mktemp("dashboard")
    # No accuracy loss allowed: students that lose any accuracy are infeasible.
    definition = tiny_study_dict(
        folder, n_trials=5, study_name="dash", constraints={"max_accuracy_drop": 0.0}
    )
    path = write_study(folder, definition)
    return run_study(path), path


@contextmanager
def dashboard_process(path: Path, *options: str) -> Iterator[str]:
    """A real `autocompress dashboard` process on the study; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "autocompress", "dashboard", str(path), "--port", str(port)]
        + list(options),
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{base}/api/meta")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"dashboard did not start:\n{process.stdout.read()}")
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(study: tuple[StudyResult, Path]) -> Iterator[str]:
    with dashboard_process(study[1]) as base:
        yield base


def study_detail(base: str, name: str) -> dict[str, Any]:
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == name]
    return get_json(f"{base}/api/studies/{summary['study_id']}")


def served_note_md(base: str, shown: dict[str, Any]) -> str:
    """A served trial's `note.md`, downloaded as the dashboard's artifact panel does."""
    (meta,) = [a for a in shown["artifacts"] if a["filename"] == NOTE_FILE]
    url = f"{base}/artifacts/{shown['study_id']}/{shown['trial_id']}/{meta['artifact_id']}"
    with urllib.request.urlopen(url) as response:
        return response.read().decode()


def noted_on_the_dashboard(study: Any) -> set[int]:
    """The trials whose note the dashboard's note panel should hold: the teacher, and
    every trial that was on the front when it completed (one worker: in number order)."""
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    noted = {t.number for t in complete if t.user_attrs.get("role") == TEACHER_ROLE}
    for trial in complete:
        so_far = [t for t in complete if t.number <= trial.number]
        if trial.number in {m.trial_number for m in front_of(so_far, study)}:
            noted.add(trial.number)
    return noted


def test_dashboard_serves_objectives_feasibility_notes_and_artifacts(
    study: tuple[StudyResult, Path], server: str
) -> None:
    result, _ = study
    detail = study_detail(server, "dash")
    assert detail["objective_names"] == ["accuracy", "f1", "latency_p50_ms"]
    served = {t["number"]: t for t in detail["trials"]}
    complete = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert complete and set(served) == {t.number for t in result.study.trials}
    feasibility = set()
    noted = noted_on_the_dashboard(result.study)
    assert {m.trial_number for m in result.front} <= noted
    for trial in complete:
        shown = served[trial.number]
        # The dashboard's feasibility is exactly Optuna's (and ours).
        assert shown["constraints"] == pytest.approx(list(trial.constraints.values()))
        assert shown["constraints"] == pytest.approx(list(named_constraints(trial).values()))
        feasibility.add(all(v <= 0 for v in shown["constraints"]))
        names = {a["filename"] for a in shown["artifacts"]}
        assert {"model.onnx", "recipe.yaml", "metrics.json", NOTE_FILE} <= names
        # Every trial's note is its note.md; the note panel holds the front's only.
        body = served_note_md(server, shown)
        assert "Pass chain" in body and trial.user_attrs["recipe_summary"] in body
        assert shown["note"]["body"] == (body if trial.number in noted else "")
    assert True in feasibility, "the teacher (no accuracy drop) is always feasible"
    # The study's own note: the reference models a bank would use instead.
    study_note = detail["note"]["body"]
    assert "Reference models" in study_note
    for name, baseline in result.baselines.items():
        assert f"| {name} | {baseline['metrics']['roc_auc']:.4f} |" in study_note

    # The artifact store is wired: the files the dashboard serves are the trial's files.
    trial = complete[-1]
    shown = served[trial.number]
    links = {
        a["filename"]: f"{server}/artifacts/{shown['study_id']}/{shown['trial_id']}/"
        f"{a['artifact_id']}"
        for a in shown["artifacts"]
    }
    stored = result.loaded.config.artifacts_path / "trials"
    with urllib.request.urlopen(links["model.onnx"]) as response:
        model_id = trial.user_attrs["artifacts"]["model.onnx"]
        assert response.read() == (stored / model_id).read_bytes()
    with urllib.request.urlopen(links["metrics.json"]) as response:
        assert json.loads(response.read())["metrics"] == trial.user_attrs["metrics"]


def test_served_notes_label_constraints_and_pass_chain_honestly(
    study: tuple[StudyResult, Path], server: str
) -> None:
    """The note says what a constraint value is (drop minus limit), names the limit a
    trial broke, and words pruning for the credit MLP without claiming transformers."""
    result, _ = study
    served = {t["number"]: t for t in study_detail(server, "dash")["trials"]}
    complete = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    for trial in complete:
        body = served_note_md(server, served[trial.number])
        assert "accuracy drop − limit" in body and "feasible when ≤ 0" in body
        assert "accuracy_drop" not in body
        if all(v <= 0 for v in trial.constraints.values()):
            assert ": feasible" in body
        else:
            assert "**infeasible**: accuracy drop over its limit" in body
        assert "heads/FFN/hidden in transformers" not in body
        if "structured pruning" in body:  # the credit task's own words for an MLP
            assert "hidden units of every hidden layer" in body


def test_an_f1_only_failure_is_named_as_f1(study: tuple[StudyResult, Path]) -> None:
    """A trial of the real study judged against an F1 limit only: the note says F1."""
    result, _ = study
    teacher = result.study.user_attrs[TEACHER_ATTR]["metrics"]
    limits = ConstraintsConfig(max_accuracy_drop=1.0, max_f1_drop=0.0)
    judged = [
        (trial, *drops_and_constraints(limits, teacher, trial.user_attrs["metrics"]))
        for trial in result.study.get_trials(states=(TrialState.COMPLETE,))
    ]
    failing = [(t, d, c) for t, d, c in judged if c["f1_drop"] > 0 and c["accuracy_drop"] <= 0]
    if not failing:
        pytest.skip("no trial of this run lost F1 without losing more than all accuracy")
    trial, drops, constraints = failing[0]
    note = completed_trial_note(
        trial.number,
        trial.user_attrs["recipe_summary"],
        [],
        trial.user_attrs["metrics"],
        drops,
        trial.user_attrs["measurement"],
        constraints,
    )
    assert "**infeasible**: f1 drop over its limit" in note
    assert "accuracy drop over" not in note
    assert "f1 drop − limit +" in note and "accuracy drop − limit -" in note


def test_dashboard_binds_loopback_only_by_default(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":  # LISTEN
            listening.append(address)
    assert listening == ["0100007F"], "127.0.0.1, little-endian hex"


def test_port_in_use_is_one_clear_message(study: tuple[StudyResult, Path], server: str) -> None:
    _, path = study
    port = server.rsplit(":", 1)[1]
    process = autocompress_cli("dashboard", str(path), "--port", port, cwd=path.parent)
    assert process.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in process.stderr
    assert "--port" in process.stderr and "Traceback" not in process.stderr


def test_dashboard_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    process = autocompress_cli("dashboard", "--storage", f"sqlite:///{missing}", cwd=tmp_path)
    assert process.returncode == 2
    assert "no database at" in process.stderr
    assert not missing.exists()


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("AUTOCOMPRESS_CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("no headless browser: install Debian's chromium")
    return found


def test_study_page_renders_in_headless_chromium(server: str, tmp_path: Path) -> None:
    browser = chromium()
    detail = study_detail(server, "dash")
    study_id = detail["trials"][0]["study_id"]
    page = f"{server}/dashboard/studies/{study_id}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1800",
        "--virtual-time-budget=20000",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Rendered by the dashboard's JavaScript from the API, not present in index.html.
    assert "dash" in dom.stdout and "Pareto Front" in dom.stdout

    TEST_ARTIFACTS.mkdir(exist_ok=True)
    screenshot = TEST_ARTIFACTS / "dashboard-study.png"
    screenshot.unlink(missing_ok=True)
    shot = subprocess.run(
        [browser, *flags, f"--screenshot={screenshot}", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(screenshot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1400
    assert pixels.std() > 0.05, "a blank page would be one colour"


def send(url: str, method: str, body: dict | None = None) -> int:
    """The HTTP status of one request that would change the study."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_read_only_dashboard_refuses_every_change(study: tuple[StudyResult, Path]) -> None:
    result, path = study
    with dashboard_process(path, "--read-only") as base:
        detail = study_detail(base, "dash")  # reading works as before
        trial = next(t for t in detail["trials"] if t["artifacts"])
        artifact = trial["artifacts"][0]
        study_id, trial_id = detail["trials"][0]["study_id"], trial["trial_id"]
        changes = {
            "create a study": (
                "POST",
                "/api/studies",
                {"study_name": "x", "directions": ["minimize"]},
            ),
            "rename it": ("POST", f"/api/studies/{study_id}/rename", {"study_name": "y"}),
            "delete it": ("DELETE", f"/api/studies/{study_id}", None),
            "edit a note": (
                "PUT",
                f"/api/studies/{study_id}/{trial_id}/note",
                {"version": 9, "body": "x"},
            ),
            "delete an artifact": (
                "DELETE",
                f"/api/artifacts/{study_id}/{trial_id}/{artifact['artifact_id']}",
                None,
            ),
        }
        refused = {
            name: send(base + url, method, body) for name, (method, url, body) in changes.items()
        }
        after = study_detail(base, "dash")
        names = [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]]
    assert refused == dict.fromkeys(changes, 403)
    assert names == ["dash"]  # not created, renamed or deleted
    shown = {t["number"]: t for t in after["trials"]}
    assert shown[trial["number"]]["artifacts"] == trial["artifacts"]
    assert shown[trial["number"]]["note"] == trial["note"]
    stored = result.loaded.config.artifacts_path / "trials" / artifact["artifact_id"]
    assert stored.is_file()


def test_loopback_dashboard_is_writable_by_default(server: str) -> None:
    """The same kind of change the read-only dashboard refuses goes through here."""
    created = send(
        f"{server}/api/studies", "POST", {"study_name": "scratch", "directions": ["minimize"]}
    )
    assert created == 201
    (scratch,) = [
        s
        for s in get_json(f"{server}/api/studies")["study_summaries"]
        if s["study_name"] == "scratch"
    ]
    assert send(f"{server}/api/studies/{scratch['study_id']}", "DELETE") == 204


# --- `--only-front`: the study lists its front and its teacher only (issue 16)


@pytest.fixture(scope="module")
def front_copy(study: tuple[StudyResult, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the study (database and artifacts) for the `--only-front` dashboard,
    which writes a note: the shared study's notes stay as the tests above expect."""
    _, path = study
    folder = tmp_path_factory.mktemp("front-copy") / "study"
    shutil.copytree(path.parent, folder)
    definition = yaml.safe_load(path.read_text())
    definition["storage"] = f"sqlite:///{folder / 'study.db'}"
    definition["artifacts_dir"] = str(folder / "artifacts")
    definition["export"]["dir"] = str(folder / "exports")
    return write_study(folder, definition)


def front_and_teacher(study: Any) -> set[int]:
    """What `--only-front` must list: the study's front, computed from every trial,
    and its teacher."""
    teacher = teacher_member(study)
    assert teacher is not None
    return {m.trial_number for m in compute_front(study)} | {teacher.trial_number}


def test_only_front_lists_the_front_and_the_teacher_with_their_notes_and_artifacts(
    study: tuple[StudyResult, Path], front_copy: Path
) -> None:
    result, _ = study
    shown_numbers = front_and_teacher(result.study)
    real = {t.number: t for t in result.study.trials}
    with dashboard_process(front_copy, "--only-front") as base:
        detail = study_detail(base, "dash")
        served = {t["number"]: t for t in detail["trials"]}
        assert set(served) == shown_numbers
        assert {t["number"] for t in detail["best_trials"]} <= shown_numbers
        member = next(
            n for n in sorted(shown_numbers) if real[n].user_attrs.get("role") != "teacher"
        )
        shown = served[member]
        # Real ids and numbers: notes and artifacts resolve as without the view.
        assert shown["trial_id"] == real[member]._trial_id
        body = served_note_md(base, shown)
        assert "Pass chain" in body and real[member].user_attrs["recipe_summary"] in body
        assert shown["note"]["body"] == body  # a front member's note is in the panel
        (model,) = [a for a in shown["artifacts"] if a["filename"] == "model.onnx"]
        url = f"{base}/artifacts/{shown['study_id']}/{shown['trial_id']}/{model['artifact_id']}"
        with urllib.request.urlopen(url) as response:
            stored = front_copy.parent / "artifacts" / "trials" / model["artifact_id"]
            assert response.read() == stored.read_bytes()
        # Editing a member's note goes through to the real storage.
        note_url = f"{base}/api/studies/{shown['study_id']}/{shown['trial_id']}/note"
        version = shown["note"]["version"] + 1
        assert send(note_url, "PUT", {"version": version, "body": "edited"}) == 204
        edited = {t["number"]: t for t in study_detail(base, "dash")["trials"]}[member]
        assert edited["note"] == {"version": version, "body": "edited"}
        # Renaming or deleting the study would act on the listed trials only: refused.
        study_id = shown["study_id"]
        assert send(f"{base}/api/studies/{study_id}/rename", "POST", {"study_name": "x"}) == 403
        assert send(f"{base}/api/studies/{study_id}", "DELETE") == 403
        names = [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]]
        assert names == ["dash"]
    # Without the view the copy still has every trial, and the edited note.
    copied = optuna.load_study(
        study_name="dash", storage=f"sqlite:///{front_copy.parent / 'study.db'}"
    )
    assert len(copied.trials) == len(result.study.trials)
    with dashboard_process(front_copy) as base:
        assert {t["number"] for t in study_detail(base, "dash")["trials"]} == set(real)


def test_only_front_view_counts_what_it_lists_and_rereads_the_front_at_most_every_refresh(
    study: tuple[StudyResult, Path],
) -> None:
    """In process, on the study's own storage: the listing, the count and the best
    trial agree; the front is read again only once `refresh_s` has passed, and a trial
    that joins it is appended."""
    from autocompress.dashboard_front import FrontOnlyStorage, snapshot_front_numbers
    from autocompress.store import optuna_storage

    result, _ = study
    url = result.loaded.config.storage_url
    reads: list[int] = []
    snapshot = snapshot_front_numbers(url, "dash")
    shown = front_and_teacher(result.study)
    outside = [t.number for t in result.study.trials if t.number not in shown]
    if not outside:
        pytest.skip("every trial of this run is on the front")
    fronts = [snapshot(), outside[:1]]  # the stored front, then one of another trial

    def front_numbers() -> list[int]:
        reads.append(1)
        return fronts[min(len(reads), len(fronts)) - 1]

    now = [0.0]
    view = FrontOnlyStorage(
        optuna_storage(url), "dash", front_numbers, refresh_s=5.0, clock=lambda: now[0]
    )
    study_id = view.study_id
    listed = view.get_all_trials(study_id)
    assert {t.number for t in listed} == shown
    assert view.get_n_trials(study_id) == len(listed)
    complete = view.get_all_trials(study_id, states=(TrialState.COMPLETE,))
    assert view.get_n_trials(study_id, TrialState.COMPLETE) == len(complete)
    assert view.get_n_trials(study_id, TrialState.FAIL) == 0
    with pytest.raises(RuntimeError):  # three objectives: as Optuna says, over the listed
        view.get_best_trial(study_id)
    listed[0].user_attrs["changed"] = True  # a deep copy by default
    assert "changed" not in view.get_all_trials(study_id)[0].user_attrs
    # Single trials read through: one not listed is still there by id and number.
    hidden = [t for t in result.study.trials if t.number not in view.listed_numbers()]
    assert hidden
    for trial in hidden:
        assert view.get_trial(trial._trial_id).number == trial.number
        assert view.get_trial_id_from_study_id_trial_number(study_id, trial.number) == (
            trial._trial_id
        )
    # The front is re-read once the refresh has passed, not on every call; a trial
    # that joins it is appended and none is dropped (the page reads by position).
    first = view.listed_numbers()
    assert first == sorted(first)
    now[0] = 4.9
    view.get_all_trials(study_id)
    assert len(reads) == 1
    now[0] = 5.0
    assert view.listed_numbers() == first + outside[:1] and len(reads) == 2
    assert view.get_n_trials(study_id) == len(view.get_all_trials(study_id))
    with pytest.raises(PermissionError):
        view.delete_study(study_id)


def test_only_front_needs_a_study_file(tmp_path: Path) -> None:
    process = autocompress_cli("dashboard", "--only-front", cwd=tmp_path)
    assert process.returncode == 2
    assert "--only-front" in process.stderr and "Traceback" not in process.stderr


def test_bulk_read_builds_the_trials_optuna_builds(study: tuple[StudyResult, Path]) -> None:
    """The dashboard's storage reads a study's trials as plain rows: the same trials,
    attributes and params in the same order, as Optuna's RDB storage builds them."""
    from autocompress.dashboard_storage import BulkReadStorage
    from autocompress.store import optuna_storage

    result, _ = study
    optuna_side = optuna_storage(result.loaded.config.storage_url)
    bulk = BulkReadStorage(optuna_side)
    study_id = result.study._study_id
    for states in (None, (TrialState.COMPLETE,), (TrialState.FAIL, TrialState.PRUNED)):
        expected = optuna_side.get_all_trials(study_id, states=states)
        got = bulk.get_all_trials(study_id, states=states)
        assert got == expected
        for ours, theirs in zip(got, expected, strict=True):
            assert vars(ours) == vars(theirs)
            for name in ("params", "distributions", "user_attrs", "system_attrs"):
                assert list(getattr(ours, name)) == list(getattr(theirs, name))
    assert bulk.get_all_trials(study_id, states=(TrialState.COMPLETE,))
    assert bulk.get_n_trials(study_id) == len(result.study.trials)
    with pytest.raises(KeyError):
        bulk.get_all_trials(study_id + 1000)


@pytest.fixture(params=["sqlite", "postgresql"])
def other_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite, or a PostgreSQL schema (skipped without a server)."""
    yield from empty_database(request.param, tmp_path / "other.db", "bulk_read")


def test_bulk_read_keeps_intermediate_values_infinities_and_every_distribution(
    other_database: str,
) -> None:
    """What our trials do not store but Optuna's may: intermediate values (nan and
    infinities among them), infinite objectives, int/log/categorical params, failures;
    on SQLite and PostgreSQL."""
    from autocompress.dashboard_storage import BulkReadStorage
    from autocompress.store import optuna_storage

    storage = optuna_storage(other_database)
    other = optuna.create_study(storage=storage, directions=["minimize", "maximize"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        n = trial.suggest_int("n", 1, 9, step=2)
        kind = trial.suggest_categorical("kind", ["a", None, 3])
        for step, value in enumerate([x, float("inf"), float("-inf"), float("nan")]):
            trial.report(value, step)
        trial.set_user_attr("kind", kind)
        if trial.number == 2:
            raise RuntimeError("a failed trial")
        return (float("inf") if trial.number == 1 else x * n), float("-inf")

    other.optimize(objective, n_trials=4, catch=(RuntimeError,))
    expected = storage.get_all_trials(other._study_id)
    got = BulkReadStorage(storage).get_all_trials(other._study_id)
    assert [t.state for t in got] == [t.state for t in expected]
    assert TrialState.FAIL in {t.state for t in got}
    for ours, theirs in zip(got, expected, strict=True):
        nan_free = {k: v for k, v in vars(ours).items() if k != "_intermediate_values"}
        assert nan_free == {k: v for k, v in vars(theirs).items() if k != "_intermediate_values"}
        assert list(ours.intermediate_values) == list(theirs.intermediate_values)
        assert repr(ours.intermediate_values) == repr(theirs.intermediate_values)  # nan == nan


def test_fast_best_trials_are_optuna_dashboards(study: tuple[StudyResult, Path]) -> None:
    """The study page's front, computed in O(n log n), is the one optuna-dashboard's
    pairwise loop finds: on the real study, and on ties, infinities, unfinished and
    failed trials for two and three objectives."""
    import random

    from optuna.study import StudyDirection
    from optuna.trial import create_trial
    from optuna_dashboard._pareto_front import get_pareto_front_trials

    from autocompress.dashboard import dashboard_best_trials

    result, _ = study
    real = result.study.get_trials(deepcopy=False)
    directions = result.study.directions
    assert dashboard_best_trials(real, directions) == get_pareto_front_trials(real, directions)

    rng = random.Random(0)
    for directions in (
        [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE],
        [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE],
    ):
        trials = []
        for number in range(400):
            state = rng.choice([TrialState.COMPLETE] * 8 + [TrialState.FAIL, TrialState.RUNNING])
            values = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in directions]
            if number % 97 == 0:
                values[0] = rng.choice([float("inf"), float("-inf")])
            trial = create_trial(
                state=state, values=values if state == TrialState.COMPLETE else None
            )
            trial.number, trial._trial_id = number, number + 1
            trials.append(trial)
        expected = get_pareto_front_trials(trials, directions)
        assert [t.number for t in dashboard_best_trials(trials, directions)] == [
            t.number for t in expected
        ]
        assert len(expected) > 1
