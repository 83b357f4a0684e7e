"""`autocompress dashboard --only-front`: optuna-dashboard on a view of the storage in
which one study lists only its front and its teacher.

optuna-dashboard reads and serialises every trial of a study each time its page loads
(optuna-dashboard#385, optuna#5909): 3.2 s per 1,000 trials of ours as they come, still
about 1.5 ms a trial with the bulk read and the fast front of `autocompress.dashboard`
(`serve`), so over 10 s at 10,000 trials. The front is what people open a large study for; here the
study's trial listing is the members of its latest front snapshot (our own tables,
`Store.latest_front`) and the teacher, read by number in one query. While the study
runs, trials that join the front are appended and those that leave it stay listed:
optuna-dashboard's page reads trials by position (`FrontOnlyStorage._read_listing`).

Everything else reads through to the real storage: trial ids and numbers are the
real ones, so notes (study system attributes), artifacts (trial system attributes)
and single-trial reads resolve as without the view. Writes that act on one trial or
on study attributes (notes, tells, user attributes, artifacts) go through unchanged.
Renaming or deleting the viewed study is refused (`guard_whole_study`): optuna-dashboard
would copy, or delete the artifacts of, the trials it lists, which here are a few of
them: the rest would be lost or their artifacts left behind.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable, Container, Iterable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from autocompress.dashboard_storage import ReadThroughStorage

REFRESH_S = 5.0
"""How long a read of the front serves: a running study's front changes as trials
complete; the study page polls every few seconds and must not read our tables each time."""


class FrontOnlyStorage(ReadThroughStorage):
    """A read-through view of `source` in which the study `study_name` lists only the
    trials on its latest front snapshot plus the teacher (by trial number, real ids;
    while the study runs, trials that join the front are appended: `_read_listing`).

    `get_all_trials`, `get_n_trials` and `get_best_trial` of that study agree with one
    another (the best trial is chosen among the listed ones); every other call, and
    every call on another study, is the real storage's."""

    def __init__(
        self,
        source: BaseStorage,
        study_name: str,
        front_numbers: Callable[[], Iterable[int]],
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source)
        real = source
        while isinstance(real, ReadThroughStorage):  # to the storage `trials_by_numbers` knows
            real = real._source
        self._study = optuna.load_study(study_name=study_name, storage=real)
        self.study_id = self._study._study_id
        self._front_numbers = front_numbers
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._listed: list[FrozenTrial] | None = None
        self._read_at = 0.0
        self._teacher: int | None = None  # a completed teacher stays the teacher
        self._order: list[int] = []  # trial numbers, in the order they were first listed

    # --- the viewed study's trial listing

    def listed_numbers(self) -> list[int]:
        """The numbers of the trials the view lists now, in its order."""
        return [trial.number for trial in self._listing()]

    def _listing(self) -> list[FrozenTrial]:
        """The listed trials, re-read at most every `refresh_s` (and after a write)."""
        with self._lock:
            if self._listed is not None and self._clock() - self._read_at < self._refresh_s:
                return self._listed
        listed = self._read_listing()
        with self._lock:
            self._listed, self._read_at = listed, self._clock()
        return listed

    def _read_listing(self) -> list[FrozenTrial]:
        """The front's members and the teacher: by number at first, then each trial
        that joins the front appended, and none removed.

        optuna-dashboard's page asks only for the trials after those it has
        (`?after=N`, by position) and keeps the first N it got: a listing that dropped
        or inserted a trial would show a mix of old and new fronts until reloaded. So
        a trial that leaves the front stays listed (the page's own Pareto front, from
        `best_trials`, no longer marks it), like the note it got in the note panel."""
        from autocompress.front import teacher_member
        from autocompress.store.trials import trials_by_numbers

        numbers = set(self._front_numbers())
        if self._teacher is None:
            teacher = teacher_member(self._study)
            self._teacher = None if teacher is None else teacher.trial_number
        if self._teacher is not None:
            numbers.add(self._teacher)
        self._order += sorted(numbers - set(self._order))
        by_number = {t.number: t for t in trials_by_numbers(self._study, self._order)}
        return [by_number[n] for n in self._order if n in by_number]

    def _changed(self) -> None:
        """A write to a trial: the next listing reads the trials again."""
        with self._lock:
            self._listed = None

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if study_id != self.study_id:
            return self._source.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        trials = [t for t in self._listing() if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        if study_id != self.study_id:
            return self._source.get_n_trials(study_id, state)
        return BaseStorage.get_n_trials(self, study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        if study_id != self.study_id:
            return self._source.get_best_trial(study_id)
        return BaseStorage.get_best_trial(self, study_id)

    # --- refused: optuna-dashboard would act on the listed trials only

    def delete_study(self, study_id: int) -> None:
        if study_id == self.study_id:
            raise PermissionError(WHOLE_STUDY_REFUSAL)
        super().delete_study(study_id)


def snapshot_front_numbers(storage_url: str, study_name: str) -> Callable[[], list[int]]:
    """A reader of the trial numbers on the study's latest front snapshot (none before
    its first), over one connection pool kept for the dashboard's lifetime."""
    from autocompress.store import Store

    store = Store(storage_url)

    def read() -> list[int]:
        snapshot = store.latest_front(study_name)
        return [] if snapshot is None else [m["trial_number"] for m in snapshot.members]

    return read


WHOLE_STUDY_REFUSAL = (
    "this dashboard shows only the study's front (--only-front): renaming or deleting the "
    "study would act on the trials it lists only; restart it without --only-front to do that"
)
_WHOLE_STUDY = re.compile(r"^/api/studies/(\d+)(/rename)?/?$")


def guard_whole_study(app: Callable, study_id: int) -> Callable:
    """Wrap a WSGI app so renaming or deleting study `study_id` is refused (403): under
    the view optuna-dashboard would copy only the listed trials into the renamed study
    and delete the original, or delete only the listed trials' artifacts."""

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        match = _WHOLE_STUDY.match(environ.get("PATH_INFO", ""))
        whole = match is not None and int(match.group(1)) == study_id
        if whole and (
            (method == "POST" and match.group(2)) or (method == "DELETE" and not match.group(2))
        ):
            body = (WHOLE_STUDY_REFUSAL + "\n").encode()
            start_response(
                "403 Forbidden",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return app(environ, start_response)

    return guarded
