"""Read commands and per-trial bookkeeping read what they need, not every trial.

`front`, `stored_front` and export (ranking policies) take the front from the latest
snapshot in our tables, the teacher by its number and the finalists by theirs: on real
studies (tiny credit study, real SQLite) they must give exactly what a brute-force
recomputation over every trial gives, and make no bulk read of the trials. The spy
below only records calls and passes them through to Optuna's real storage.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages import RDBStorage, _CachedStorage
from optuna.trial import FrozenTrial, TrialState, create_trial
from typer.testing import CliRunner

from autocompress.api import StudyResult, load_result, run_study, stored_front
from autocompress.cli import app
from autocompress.config import CostControlConfig
from autocompress.front import (
    TEACHER_ROLE,
    TEACHER_TRIAL_ATTR,
    FrontMember,
    compute_front,
    front_of,
    is_feasible,
    teacher_member,
)
from autocompress.policies import Candidates, parse_policy
from autocompress.search import EpochMonitor, record_front
from autocompress.select import ranked
from autocompress.store import Store, optuna_storage
from autocompress.store.trials import count_trials, trial_by_number
from tests.conftest import tiny_study_dict, write_study

POLICIES = ("fastest", "most_accurate", "best:f1", "best:roc_auc")
SYNTHETIC = 400


class ReadSpy:
    """Records every bulk read of a study's trials (`get_all_trials` of Optuna's cache
    or of the RDB storage) and every row the RDB storage builds for one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bulk: list[dict[str, Any]] = []
        self.rows = 0
        spy = self

        for cls in (_CachedStorage, RDBStorage):
            real = cls.get_all_trials

            def get_all_trials(
                storage: Any,
                study_id: int,
                deepcopy: bool = True,
                states: Any = None,
                _real: Any = real,
                _cls: type = cls,
            ) -> list[FrozenTrial]:
                trials = _real(storage, study_id, deepcopy=deepcopy, states=states)
                spy.bulk.append(
                    {
                        "by": _cls.__name__,
                        "deepcopy": deepcopy,
                        "states": None if states is None else tuple(states),
                        "returned": len(trials),
                    }
                )
                return trials

            monkeypatch.setattr(cls, "get_all_trials", get_all_trials)
        real_rows = RDBStorage._get_trials

        def _get_trials(storage: Any, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
            trials = real_rows(storage, *args, **kwargs)
            spy.rows += len(trials)
            return trials

        monkeypatch.setattr(RDBStorage, "_get_trials", _get_trials)

    def reset(self) -> None:
        self.bulk.clear()
        self.rows = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> ReadSpy:
    return ReadSpy(monkeypatch)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    folder = tmp_path_factory.mktemp("small")
    return run_study(write_study(folder, tiny_study_dict(folder, n_trials=4)), progress=False)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    """A real study, then `SYNTHETIC` complete trials copying a real feasible student's
    attributes, each better in accuracy and f1 and slower than the one before: all on
    the front. A snapshot is recorded after them, as a worker would."""
    folder = tmp_path_factory.mktemp("large")
    result = run_study(write_study(folder, tiny_study_dict(folder, n_trials=3)), progress=False)
    study = result.study
    real = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.constraints]
    feasible = [t for t in real if all(v <= 0 for v in t.constraints.values())]
    template = feasible[-1]
    slowest = max(t.user_attrs["measurement"]["latency_p50_ms"] for t in real)
    names = study.metric_names
    assert names == ["accuracy", "f1", "latency_p50_ms"]
    # More accurate than any real trial (so not dominated by a faster real one).
    best = {m: max(t.user_attrs["metrics"][m] for t in real) for m in ("accuracy", "f1")}
    for k in range(SYNTHETIC):
        accuracy, f1 = best["accuracy"] + (k + 1) * 1e-4, best["f1"] + (k + 1) * 1e-4
        latency = slowest + 1.0 + k * 0.01
        attrs = json.loads(json.dumps(template.user_attrs))
        attrs["metrics"] = {**attrs["metrics"], "accuracy": accuracy, "f1": f1}
        attrs["measurement"] = {**attrs["measurement"], "latency_p50_ms": latency}
        attrs["recipe_summary"] = f"synthetic {k}"
        study.add_trial(
            create_trial(
                values=[accuracy, f1, latency],
                params=template.params,
                distributions=template.distributions,
                user_attrs=attrs,
                system_attrs=dict(template.system_attrs),
            )
        )
    last = study.get_trials(deepcopy=False)[-1].number
    store = Store(result.loaded.config.storage_url)
    try:
        record_front(store, study, last)
    finally:
        store.close()
    return result


def brute_force(result: StudyResult) -> tuple[list[FrontMember], FrontMember | None]:
    """The front and the teacher recomputed from every trial of a freshly loaded study."""
    config = result.loaded.config
    study = optuna.load_study(
        study_name=config.study_name, storage=optuna_storage(config.storage_url)
    )
    every = study.get_trials()
    teachers = [
        t
        for t in every
        if t.state == TrialState.COMPLETE and t.user_attrs.get("role") == TEACHER_ROLE
    ]
    return compute_front(study), FrontMember.from_trial(teachers[0]) if teachers else None


def as_rows(members: list[FrontMember]) -> list[dict[str, Any]]:
    """Members as JSON reads them back (what the snapshot stores)."""
    return json.loads(json.dumps([m.to_dict() for m in members]))


Case = tuple[StudyResult, list[FrontMember], FrontMember | None]


@pytest.fixture(params=["small", "large"])
def case(request: pytest.FixtureRequest, spy: ReadSpy) -> Case:
    """A study, and its front and teacher by brute force; the spy counts from here on."""
    result: StudyResult = request.getfixturevalue(request.param)
    front, teacher = brute_force(result)
    if request.param == "large":
        assert len(front) >= SYNTHETIC
    spy.reset()
    return result, front, teacher


def test_stored_front_and_front_json_match_a_recomputation_from_every_trial(
    case: Case, spy: ReadSpy
) -> None:
    result, front, teacher = case
    stored = stored_front(result.loaded)
    assert as_rows(stored.members) == as_rows(front)
    assert stored.teacher is not None and teacher is not None
    assert as_rows([stored.teacher]) == as_rows([teacher])
    invoked = CliRunner().invoke(app, ["front", str(result.loaded.source), "--json"])
    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == as_rows(front)
    assert spy.bulk == [] and spy.rows == 0
    brute_force(result)  # the spy does see a read of every trial
    assert spy.bulk and spy.rows == count_trials(result.study)


def test_export_ranks_the_snapshot_as_it_would_rank_every_trial(case: Case, spy: ReadSpy) -> None:
    result, front, _ = case
    loaded = load_result(result.loaded)
    snapshot_front = loaded.front
    assert as_rows(snapshot_front) == as_rows(front)
    budget = result.loaded.config.export.latency_budget_ms
    for policy in POLICIES:
        expected = [m.trial_number for m in ranked(front, policy, result.study, budget)]
        got = [m.trial_number for m in ranked(snapshot_front, policy, loaded.study, budget)]
        assert got == expected, policy
    out = loaded.export(Path(result.loaded.source).parent / "export", policy="fastest")
    assert spy.bulk == [] and spy.rows == 0
    study = yaml.safe_load((out / "config.yaml").read_text())["study"]
    assert study["trial_number"] == ranked(front, "fastest", result.study, budget)[0].trial_number
    assert study["teacher"] == result.study.user_attrs["autocompress:teacher"]


def test_export_of_a_named_trial_reads_that_trial_alone(small: StudyResult, spy: ReadSpy) -> None:
    number = max(m.trial_number for m in compute_front(small.study))
    spy.reset()
    loaded = load_result(small.loaded)
    chosen = parse_policy(f"trial:{number}").ranked(Candidates([], loaded.study))
    assert [m.trial_number for m in chosen] == [number]
    assert spy.bulk == [] and spy.rows == 0


def test_a_stale_snapshot_is_not_exported_from(large: StudyResult, spy: ReadSpy) -> None:
    """A complete trial added after the latest snapshot: the front is recomputed (the
    snapshot no longer covers every complete trial), and matches brute force."""
    from autocompress.api import current_front

    config = large.loaded.config
    study = optuna.load_study(
        study_name=config.study_name, storage=optuna_storage(config.storage_url)
    )
    fastest = min(compute_front(study), key=lambda m: m.metrics["latency_p50_ms"])
    template = trial_by_number(study, fastest.trial_number)
    assert template is not None
    attrs = json.loads(json.dumps(template.user_attrs))
    attrs["measurement"]["latency_p50_ms"] = fastest.metrics["latency_p50_ms"] / 2
    attrs["metrics"]["accuracy"] = 0.99
    attrs["metrics"]["f1"] = 0.99
    study.add_trial(
        create_trial(
            values=[0.99, 0.99, attrs["measurement"]["latency_p50_ms"]],
            user_attrs=attrs,
            system_attrs=dict(template.system_attrs),
        )
    )
    front, _ = brute_force(large)
    assert len(front) == 1  # it dominates everything
    assert as_rows(current_front(study, config.storage_url)) == as_rows(front)


def test_the_teacher_is_read_by_its_recorded_number(small: StudyResult, spy: ReadSpy) -> None:
    assert small.study.user_attrs[TEACHER_TRIAL_ATTR] == 0
    _, teacher = brute_force(small)
    spy.reset()
    found = teacher_member(small.study)
    assert found is not None and teacher is not None
    assert found.trial_number == teacher.trial_number == 0
    assert spy.bulk == [] and spy.rows == 0


def test_an_older_study_whose_teacher_is_not_trial_zero_is_searched(tmp_path: Path) -> None:
    """Made before the teacher's number was recorded: trial 0 is not the teacher, so the
    complete trials are searched (and a study with no completed teacher has none)."""
    storage = optuna_storage(f"sqlite:///{tmp_path / 'old.db'}")
    study = optuna.create_study(study_name="old", storage=storage, directions=["maximize"])
    study.add_trial(create_trial(value=0.5, user_attrs={"role": "warm_start"}))
    assert teacher_member(study) is None
    study.add_trial(create_trial(value=0.7, user_attrs={"role": TEACHER_ROLE, "metrics": {}}))
    found = teacher_member(study)
    assert found is not None and found.trial_number == 1


def test_counts_are_counted(large: StudyResult, spy: ReadSpy) -> None:
    study = large.study
    every = study.get_trials(deepcopy=False)
    spy.reset()
    assert count_trials(study) == len(every)
    assert count_trials(study, (TrialState.COMPLETE,)) == sum(
        t.state == TrialState.COMPLETE for t in every
    )
    assert count_trials(study, (TrialState.RUNNING,)) == 0
    assert spy.bulk == [] and spy.rows == 0


def monitor_epochs(study: optuna.Study, settings: CostControlConfig, spy: ReadSpy) -> None:
    """A trial's monitor called after epochs 1..4 of 5 (every rule's epochs); the spy
    counts from the monitor's creation on (asking for the trial reads the trials)."""
    trial = study.ask()
    spy.reset()
    monitor = EpochMonitor(trial, settings, last_epoch=5)
    try:
        for epoch in range(1, 5):
            monitor(epoch, 0.9)
    finally:
        counted = (list(spy.bulk), spy.rows)
        study.tell(trial, state=TrialState.FAIL)
        spy.bulk[:], spy.rows = counted


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_the_epoch_monitor_reads_no_trial_with_its_rules_off(
    large: StudyResult, spy: ReadSpy
) -> None:
    monitor_epochs(large.study, CostControlConfig(min_epochs=1), spy)
    assert spy.bulk == [] and spy.rows == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_the_epoch_monitor_reads_complete_trials_once_per_epoch_for_its_rules(
    large: StudyResult, spy: ReadSpy
) -> None:
    settings = CostControlConfig(min_epochs=1, median_stop=True, min_trials=10**6)
    monitor_epochs(large.study, settings, spy)
    mine = [call for call in spy.bulk if call["by"] == "_CachedStorage"]
    assert len(mine) == 4  # epochs 1-4, one read each
    assert all(c["states"] == (TrialState.COMPLETE,) and not c["deepcopy"] for c in mine)


def test_a_retried_teacher_is_recorded_when_it_completes(tmp_path: Path) -> None:
    """Trial 0 (the teacher) went stale and failed; its retry completes as trial 1: it
    is found while the study still names trial 0, and named once its snapshot is taken."""
    from autocompress.search import FrontSnapshots

    url = f"sqlite:///{tmp_path / 'retried.db'}"
    study = optuna.create_study(
        study_name="retried", storage=optuna_storage(url), directions=["maximize"]
    )
    study.set_user_attr(TEACHER_TRIAL_ATTR, 0)
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"role": TEACHER_ROLE}))
    assert teacher_member(study) is None
    retry = create_trial(value=0.7, user_attrs={"role": TEACHER_ROLE, "metrics": {}})
    study.add_trial(retry)
    found = teacher_member(study)
    assert found is not None and found.trial_number == 1
    store = Store(url)
    try:
        FrontSnapshots(store)(study, study.get_trials()[-1])
    finally:
        store.close()
    assert study.user_attrs[TEACHER_TRIAL_ATTR] == 1
    found = teacher_member(study)
    assert found is not None and found.trial_number == 1


# Recording the front trial after trial: built on the previous snapshot ------------------


class Built:
    """Counts the trials Optuna's RDB storage builds, however they are read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = RDBStorage._build_frozen_trial_from_trial_model

        def build(storage: Any, model: Any) -> FrozenTrial:
            self.count += 1
            return real(storage, model)

        monkeypatch.setattr(RDBStorage, "_build_frozen_trial_from_trial_model", build)


class Grown:
    """An empty study beside `small`'s, grown with SYNTHETIC-style trials that copy a real
    feasible student's attributes; the front is recorded after each completed one, as
    the workers' callbacks do, and checked against brute force."""

    def __init__(self, small: StudyResult, tmp_path: Path, spy: ReadSpy, built: Built) -> None:
        real = small.study.get_trials(states=(TrialState.COMPLETE,))
        self.template = [t for t in real if t.constraints and is_feasible(t)][-1]
        self.url = f"sqlite:///{tmp_path / 'grown.db'}"
        self.study = optuna.create_study(
            study_name="grown",
            storage=optuna_storage(self.url),
            directions=["maximize", "maximize", "minimize"],
        )
        self.store = Store(self.url)
        self.spy, self.built = spy, built
        self.incremental = 0
        self.known: dict[int, FrozenTrial] | None = None  # {}: as FrontSnapshots keeps it

    def complete(
        self, accuracy: float, latency: float, feasible: bool = True, state: Any = None
    ) -> int:
        """A trial completed (or ended in `state`) in the storage, as another worker's
        would be; returns its number."""
        state = state or TrialState.COMPLETE
        attrs = json.loads(json.dumps(self.template.user_attrs))
        attrs["metrics"] = {**attrs["metrics"], "accuracy": accuracy, "f1": accuracy}
        attrs["measurement"] = {**attrs["measurement"], "latency_p50_ms": latency}
        complete = state == TrialState.COMPLETE
        self.study.add_trial(
            create_trial(
                state=state,
                values=[accuracy, accuracy, latency] if complete else None,
                params=self.template.params,
                distributions=self.template.distributions,
                user_attrs=attrs,
                system_attrs={"constraints": [0.0 if feasible else 0.1]},
            )
        )
        return self.study.get_trials(deepcopy=False)[-1].number

    def record(self, number: int) -> None:
        """`record_front` after trial `number`; then the snapshot must be the front of
        every complete trial. Built on a snapshot (any after the study's first), it
        reads no trial in bulk, only the previous front and one trial by number."""
        head = self.store.front_head("grown")
        self.spy.reset()
        self.built.count = 0
        record_front(self.store, self.study, number, known=self.known)
        bulk, rows, built = list(self.spy.bulk), self.spy.rows, self.built.count
        if bulk == []:
            assert head is not None and rows == 0
            assert built <= len(head.member_numbers) + 1
            if self.known is not None:  # one worker: only its new trial is read
                assert built <= 1
            self.incremental += 1
        latest = self.store.latest_front("grown")
        complete = self.study.get_trials(states=(TrialState.COMPLETE,))
        assert latest is not None and latest.after_trial_number == number
        assert latest.n_complete_trials == len(complete)
        assert latest.members == as_rows(front_of(complete, self.study))

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def grown(small: StudyResult, tmp_path: Path, spy: ReadSpy, monkeypatch: pytest.MonkeyPatch):
    study = Grown(small, tmp_path, spy, Built(monkeypatch))
    yield study
    study.close()


@pytest.mark.parametrize("remember", [False, True], ids=["reading the front", "remembering it"])
@pytest.mark.parametrize("shape", ["few on the front", "all on the front"])
def test_the_front_recorded_after_each_trial_is_the_front_of_every_complete_trial(
    grown: Grown, shape: str, remember: bool
) -> None:
    """Trial after trial, one worker: every snapshot but the first is built on the one
    before (no bulk read), and equals the front of every complete trial. Pruned and
    failed trials, infeasible ones, and a trial that pushes a third of a large front
    off it at once, along the way. The worker reads the previous front's trials by
    number, or keeps them from its last snapshot (`FrontSnapshots`) and reads only the
    new trial."""
    grown.known = {} if remember else None
    rng = random.Random(0)
    n = 90
    ended = [k for k in range(n) if k % 17 == 5]  # pruned or failed
    for k in range(n):
        if k in ended:
            grown.complete(0.0, 0.0, state=(TrialState.PRUNED, TrialState.FAIL)[k % 2])
            continue
        feasible = k % 11 != 3
        if shape == "few on the front":
            accuracy, latency = rng.uniform(0.6, 0.8), rng.uniform(1.0, 10.0)
        elif k == 2 * n // 3:  # better than all, faster than the slowest third: they leave
            accuracy, latency = 0.6 + n * 1e-3, 1.0 + (n // 3) * 0.01
        else:  # each more accurate and slower than the last: all on the front
            accuracy, latency = 0.6 + (k + (n if k > 2 * n // 3 else 0)) * 1e-3, 1.0 + k * 0.01
        grown.record(grown.complete(accuracy, latency, feasible))
    assert grown.incremental == n - len(ended) - 1  # all but the first
    front = grown.store.latest_front("grown")
    assert front is not None
    if shape == "all on the front":
        assert len(front.members) > n // 2
        rows = count_rows(grown.url, "autocompress_front_memberships")
        assert rows < 2 * n  # one row per stay, not one per member per snapshot


def count_rows(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(text(f"SELECT count(*) FROM {table}")))
    finally:
        engine.dispose()


def test_workers_finishing_in_between_are_named_by_the_sums_of_trial_numbers(
    grown: Grown,
) -> None:
    """Two workers interleaving. Trials a and b complete; b's worker records first: two
    trials are new since the last snapshot, so its front is computed from every trial
    (a included). Then x completes, and a's worker records: one trial more than b's
    snapshot counted, and that trial is x, not a. Taking it for a would miss x, which
    tops the front."""
    grown.record(grown.complete(0.70, 5.0))
    grown.record(grown.complete(0.72, 6.0))
    a = grown.complete(0.74, 7.0)
    b = grown.complete(0.71, 5.5)
    grown.record(b)  # two new: from every trial
    assert grown.incremental == 1
    x = grown.complete(0.90, 4.0)  # dominates every other one
    grown.record(a)  # one new: x, named by the sums, built on b's snapshot
    assert grown.incremental == 2
    latest = grown.store.latest_front("grown")
    assert latest is not None and [m["trial_number"] for m in latest.members] == [x]
    grown.record(x)  # nothing new since a's snapshot: still built on it
    assert grown.incremental == 3
    # A worker whose trial was pruned meanwhile records nothing; a failed one neither.
    grown.complete(0.0, 0.0, state=TrialState.PRUNED)
    grown.record(grown.complete(0.95, 9.0))
    assert grown.incremental == 4


def test_a_snapshot_from_before_v4_is_built_on_after_one_recomputation(grown: Grown) -> None:
    """A snapshot converted from v3 holds no sum of trial numbers: the next front is
    computed from every trial; the one after that is built on it."""
    first = grown.complete(0.70, 5.0)
    grown.store.record_front("grown", first, 1, [])  # as converted: no sum (and wrong)
    grown.record(grown.complete(0.72, 6.0))
    assert grown.incremental == 0
    grown.record(grown.complete(0.74, 4.0))
    assert grown.incremental == 1
