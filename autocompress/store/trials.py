"""Targeted reads of a study's trials: trials by number, and counts.

Optuna's `get_n_trials` builds every trial of the study to count them (no storage of
Optuna 5 overrides it), and `study.trials` deep-copies them all: at 50,000 trials a
count or a lookup cost a minute. Here a count is one `SELECT count(*)` on an RDB storage
(Optuna's own `get_n_trials` elsewhere), a trial is read alone by its number, and a few
(a front) by theirs in one query.

Imports optuna: the registry and the CLI import `autocompress.store` without it, so
this module is not re-exported there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from autocompress.store.resilience import DEFAULT_RETRY_S, retry_transient


def count_trials(study: optuna.Study, states: Iterable[TrialState] | None = None) -> int:
    """How many trials of `study` are in one of `states` (all when None), counted by
    the database, not by reading the trials."""
    return count_stored_trials(study._storage, study._study_id, states)


def count_stored_trials(
    storage: Any, study_id: int, states: Iterable[TrialState] | None = None
) -> int:
    """`count_trials` for the study `study_id` of an Optuna `storage`."""
    wanted = None if states is None else tuple(states)
    rdb = _rdb_backend(storage)
    if rdb is None:
        return storage.get_n_trials(study_id, state=wanted)
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    def count() -> int:
        with _create_scoped_session(rdb.scoped_session) as session:
            query = session.query(func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id
            )
            if wanted is not None:
                query = query.filter(models.TrialModel.state.in_(wanted))
            return int(query.scalar() or 0)

    return retry_transient(count, "count_trials", getattr(storage, "_budget_s", DEFAULT_RETRY_S))


def complete_count_and_sum(study: optuna.Study) -> tuple[int, int]:
    """How many trials of `study` are complete, and the sum of their numbers: one
    aggregate query on an RDB storage, taken at one instant. Trials never leave the
    COMPLETE state, so between two such readings the sums tell which trial completed
    when the counts differ by one."""
    storage = study._storage
    rdb = _rdb_backend(storage)
    if rdb is None:
        complete = storage.get_all_trials(
            study._study_id, deepcopy=False, states=(TrialState.COMPLETE,)
        )
        return len(complete), sum(t.number for t in complete)
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    def read() -> tuple[int, int]:
        with _create_scoped_session(rdb.scoped_session) as session:
            count, total = (
                session.query(
                    func.count(models.TrialModel.trial_id), func.sum(models.TrialModel.number)
                )
                .filter(
                    models.TrialModel.study_id == study._study_id,
                    models.TrialModel.state == TrialState.COMPLETE,
                )
                .one()
            )
            return int(count or 0), int(total or 0)

    return retry_transient(read, "count_trials", getattr(storage, "_budget_s", DEFAULT_RETRY_S))


def trials_by_numbers(study: optuna.Study, numbers: Iterable[int]) -> list[FrozenTrial]:
    """The trials of `study` with these numbers (those that exist), by number: on an RDB
    storage one query per 500 numbers, whatever the size of the study. Not copies: do
    not change them."""
    wanted = sorted(set(numbers))
    storage = study._storage
    rdb = _rdb_backend(storage)
    if rdb is None:
        found = (trial_by_number(study, number) for number in wanted)
        return [trial for trial in found if trial is not None]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy.orm import selectinload

    model = models.TrialModel
    related = (model.params, model.values, model.user_attributes, model.system_attributes)

    def read() -> list[FrozenTrial]:
        trials: list[FrozenTrial] = []
        with _create_scoped_session(rdb.scoped_session) as session:
            for start in range(0, len(wanted), CHUNK):
                query = (
                    session.query(model)
                    .options(*(selectinload(r) for r in related))
                    .options(selectinload(model.intermediate_values))
                    .filter(
                        model.study_id == study._study_id,
                        model.number.in_(wanted[start : start + CHUNK]),
                    )
                )
                trials += [rdb._build_frozen_trial_from_trial_model(row) for row in query]
        return sorted(trials, key=lambda trial: trial.number)

    return retry_transient(
        read, "trials_by_numbers", getattr(storage, "_budget_s", DEFAULT_RETRY_S)
    )


CHUNK = 500  # numbers in one IN (...): far below every backend's limit on bound parameters


def params_by_numbers(
    study: optuna.Study, numbers: Iterable[int]
) -> Iterator[tuple[int, TrialState, dict[str, Any]]]:
    """(number, state, params) of the trials of `study` with these numbers, by number:
    the params alone, not the attributes, read `CHUNK` numbers at a time and yielded as
    read, so a worker resuming a study of 50,000 trials holds one chunk at a time."""
    wanted = sorted(set(numbers))
    storage = study._storage
    rdb = _rdb_backend(storage)
    if rdb is None:
        for trial in trials_by_numbers(study, wanted):
            yield trial.number, trial.state, trial.params
        return
    from optuna import distributions
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy.orm import selectinload

    model = models.TrialModel

    def read(chunk: list[int]) -> list[tuple[int, TrialState, dict[str, Any]]]:
        with _create_scoped_session(rdb.scoped_session) as session:
            query = (
                session.query(model)
                .options(selectinload(model.params))
                .filter(model.study_id == study._study_id, model.number.in_(chunk))
            )
            return [
                (
                    row.number,
                    row.state,
                    {
                        p.param_name: distributions.json_to_distribution(
                            p.distribution_json
                        ).to_external_repr(p.param_value)
                        for p in sorted(row.params, key=lambda p: p.param_id)
                    },
                )
                for row in query
            ]

    budget = getattr(storage, "_budget_s", DEFAULT_RETRY_S)
    for start in range(0, len(wanted), CHUNK):
        chunk = partial(read, wanted[start : start + CHUNK])
        yield from sorted(retry_transient(chunk, "params_by_numbers", budget))


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Set several user attributes of a running trial: on an RDB storage in one
    transaction (Optuna commits each `set_user_attr` on its own, and a judged trial
    records over a dozen; on SQLite every commit is a sync to disk), retried whole while
    the database blinks. The trial's own copy is kept in step, as `set_user_attr` does."""
    rdb = _rdb_backend(trial.study._storage)
    if rdb is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def write() -> None:
        with _create_scoped_session(rdb.scoped_session, True) as session:
            for key, value in attrs.items():
                rdb._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial._trial_id, key, value
                )

    budget = getattr(trial.study._storage, "_budget_s", DEFAULT_RETRY_S)
    retry_transient(write, "set_user_attrs", budget)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial | None:
    """Trial `number` of `study` read alone (None when the study has no such trial).
    Not a copy: do not change it."""
    storage = study._storage
    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        return None
    return storage.get_trial(trial_id)


def _rdb_backend(storage: Any) -> RDBStorage | None:
    """The `RDBStorage` under Optuna's cache and our retrying wrapper, if there is one."""
    seen: set[int] = set()
    while storage is not None and id(storage) not in seen:
        if isinstance(storage, RDBStorage):
            return storage
        seen.add(id(storage))
        inner = vars(storage).get("_inner") or vars(storage).get("_backend")
        storage = inner
    return None
