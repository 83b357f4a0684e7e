"""Targeted reads of a study's trials: one trial by number, and counts.

Optuna's `get_n_trials` builds every trial of the study to count them (no storage of
Optuna 5 overrides it), and `study.trials` deep-copies them all: at 50,000 trials a
count or a lookup cost a minute. Here a count is one `SELECT count(*)` on an RDB storage
(Optuna's own `get_n_trials` elsewhere), and a trial is read alone by its number.

Imports optuna: the registry and the CLI import `autocompress.store` without it, so
this module is not re-exported there.
"""

from __future__ import annotations

from collections.abc import Iterable
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
