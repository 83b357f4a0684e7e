"""The Python API. The CLI calls exactly these functions with the same names.

from autocompress import run_study
result = run_study("studies/german_credit.yaml", n_trials=20)
result.front            # feasible Pareto front, teacher included
result.export("out/")   # selected by the study's export policy

Reading a study (its front, a report, an export whose seeds are recorded) needs only
optuna and SQLAlchemy; torch, the tasks, the targets and the baselines (seconds of
imports) are imported inside the functions that train, so `autocompress front` answers
at once. tests/test_cli_imports.py holds the read commands to that.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.artifacts import AtomicArtifactStore
from autocompress.atomic import check_replaceable
from autocompress.baselines import BASELINES_ATTR
from autocompress.changes import HELD_OUT_SPLIT, SEARCH_SPLIT, Judgement, TeacherComparison
from autocompress.config import LoadedStudy, StudyConfig, StudySource, as_loaded
from autocompress.dashboard import seed_runs
from autocompress.errors import StorageUnavailable, TrialAborted, UserError
from autocompress.export import export_trial
from autocompress.finalists import Retrain, train_seeds
from autocompress.front import FrontMember, compute_front, teacher_member
from autocompress.manifest import export_refusal
from autocompress.policies import ExplicitTrial, parse_policy
from autocompress.recipe import Recipe
from autocompress.select import choose, logged
from autocompress.store import (
    Store,
    check_reachable,
    database_exists,
    optuna_storage,
    safe_url,
)
from autocompress.store.resilience import describe, is_disk_full, is_transient
from autocompress.store.setup_lock import setup_lock
from autocompress.store.trials import count_stored_trials, count_trials, trial_by_number

if TYPE_CHECKING:
    from torch import nn

    from autocompress.report import ReportFiles
    from autocompress.search import Objective, WarmStart
    from autocompress.targets import Target
    from autocompress.tasks import Task

IDENTITY_ATTR = "autocompress:identity"
TEACHER_ATTR = "autocompress:teacher"
# The target fingerprint (machine + runtime) every latency in the study was measured on.
MACHINE_ATTR = "autocompress:machine"
Callback = Callable[[optuna.Study, FrozenTrial], None]
logger = logging.getLogger("autocompress")


@dataclass
class StudyResult:
    """A study and its configuration; the front is always read fresh from storage."""

    study: optuna.Study
    loaded: LoadedStudy
    # The run's trainer, kept so that an export right after the run re-trains finalists
    # without loading the task and teacher again.
    objective: Objective | None = field(default=None, repr=False)

    @property
    def front(self) -> list[FrontMember]:
        return current_front(self.study, self.loaded.config.storage_url)

    @property
    def baselines(self) -> dict[str, dict]:
        """Reference models fitted on the same split (credit: LightGBM, logistic
        regression): their test scores and latency on the same target."""
        return self.study.user_attrs.get(BASELINES_ATTR, {})

    @property
    def teacher(self) -> FrontMember | None:
        return teacher_member(self.study)

    def export(
        self,
        out: str | Path | None = None,
        policy: str | None = None,
        overwrite: bool = False,
        sign_key: str | Path | None = None,
        seeds: int | None = None,
    ) -> Path:
        return export_selected(
            self.study, self.loaded, out, policy, overwrite, sign_key, self.objective, seeds
        )

    @property
    def seeds(self) -> dict[int, dict]:
        """Finalists trained again with more seeds before export, by trial number."""
        return seed_runs(self.study.user_attrs)


class StoredFront(NamedTuple):
    """What `autocompress front` shows: the front, the teacher and reference models."""

    members: list[FrontMember]
    teacher: FrontMember | None
    baselines: dict[str, dict]
    seeds: dict[int, dict]  # finalists trained again with more seeds, by trial number


def run_study(
    study_file: StudySource,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    data: str | Path | None = None,
    sampler_seed: int | None = None,
    callbacks: Sequence[Callback] = (),
    warm_starts: Sequence[WarmStart] = (),
    progress: bool = True,
) -> StudyResult:
    """Run (or resume) the study a file describes; returns when `n_trials` more are done.

    A new study tries the teacher first, then `warm_starts`, then the study file's
    `warm_start` recipes. Everything a user can get wrong is checked before anything
    is written. `progress` shows Optuna's progress bar (the CLI draws its own).
    """
    loaded = as_loaded(
        study_file,
        n_trials=n_trials,
        timeout=timeout,
        storage=storage,
        study_name=study_name,
        data=data,
        sampler_seed=sampler_seed,
    )
    config = loaded.config
    _check_outputs_writable(loaded)
    # The training stack (seconds of imports) once the study file and folders are good.
    import torch

    from autocompress.baselines.study import describe_baselines
    from autocompress.search import (
        FrontSnapshots,
        Objective,
        WarmStart,
        check_metrics_defined,
        enqueue_first_trials,
    )
    from autocompress.targets import build_target
    from autocompress.tasks import build_task

    torch.set_num_threads(config.workers.torch_threads)  # for this process: see the key
    task = build_task(config)
    # AUC, Gini, KS need both classes in the splits they are judged on.
    check_metrics_defined(config, {split: task.labels(split) for split in ("valid", "test")})
    target = build_target(config)
    _check_policy_can_select(loaded)
    check_reachable(config.storage_url)
    # One process at a time creates the tables and the study, numbers its start (which
    # picks its sampler seed) and queues the first trials: workers started together
    # neither race nor queue the teacher twice.
    with setup_lock(config.storage_url):
        store = Store(config.storage_url, retry_s=config.workers.db_retry_s)
        start = store.register_worker_start(config.study_name, config.sampler.seed)
        study = _create_or_resume(loaded, target, start)
        enqueue_first_trials(study, [*warm_starts, *(WarmStart(p) for p in config.warm_start)])
    logger.info(
        "study %r in %s: %d trials so far (start %d of this study, %d torch thread(s)); "
        "preparing the teacher (trained once per study, then cached)",
        config.study_name,
        safe_url(config.storage_url),
        count_trials(study),
        start + 1,
        torch.get_num_threads(),
    )
    try:
        teacher = task.teacher(config.artifacts_path / "teachers")
        comparison = compare_with_teacher(study, config, task, teacher, target)
        describe_baselines(
            study,
            task,
            target,
            config.artifacts_path / "baselines" / config.study_name,
            list(getattr(config.task, "baselines", [])),
            comparison,
        )
    except Exception as error:  # OSError, or a library's own error around ENOSPC
        if not is_disk_full(error):
            raise
        store.close()
        raise UserError(
            f"disk full while preparing the teacher ({describe(error)}); "
            "nothing was cached. Free space there and run the same command again"
        ) from None
    objective = Objective(loaded, task, teacher, target, comparison, artifact_store(loaded))
    try:
        study.optimize(
            objective,
            n_trials=config.n_trials,
            timeout=config.timeout,
            callbacks=[FrontSnapshots(store), *callbacks],
            show_progress_bar=progress,
        )
    except TrialAborted as aborted:
        raise UserError(str(aborted)) from None
    except Exception as error:
        if is_disk_full(error):
            reason = f"disk full: the database {safe_url(config.storage_url)} cannot grow"
            raise UserError(
                f"{reason} ({describe(error)}). {objective.abandon_running_trial(reason)} "
                "Free space there and run the same command again"
            ) from None
        if not is_transient(error):
            raise
        reason = f"database unreachable: {describe(error)}"
        raise StorageUnavailable(
            f"storage: lost the database {safe_url(config.storage_url)} "
            f"({describe(error)}) and it did not come back within "
            f"workers.db_retry_s ({config.workers.db_retry_s:g} s). "
            f"{objective.abandon_running_trial(reason)} Run the same command again when "
            "the database is back: finished trials are kept"
        ) from None
    finally:
        store.close()
    return StudyResult(study=study, loaded=loaded, objective=objective)


def load_result(
    study_file: StudySource, *, storage: str | None = None, study_name: str | None = None
) -> StudyResult:
    """An existing study, for reading its front or exporting from it."""
    loaded = as_loaded(study_file, storage=storage, study_name=study_name)
    return StudyResult(study=_load_existing(loaded), loaded=loaded)


def stored_front(
    study_file: StudySource, *, storage: str | None = None, study_name: str | None = None
) -> StoredFront:
    """The latest front snapshot from our tables (what `autocompress front` prints),
    the teacher trial and the study's baselines (LightGBM, ...) for reference."""
    loaded = as_loaded(study_file, storage=storage, study_name=study_name)
    study = _load_existing(loaded)
    store = Store(loaded.config.storage_url)
    try:
        snapshot = store.latest_front(loaded.config.study_name)
    finally:
        store.close()
    if snapshot is None:
        raise UserError(f"study {loaded.config.study_name!r} has no completed trial yet")
    return StoredFront(
        [FrontMember(**member) for member in snapshot.members],
        teacher_member(study),
        study.user_attrs.get(BASELINES_ATTR, {}),
        seed_runs(study.user_attrs),
    )


def current_front(
    study: optuna.Study, url: str, n_complete: int | None = None
) -> list[FrontMember]:
    """The study's feasible front: its latest snapshot when that was computed from every
    complete trial there is now (`n_complete` of them; counted when not given), else
    computed from the trials. Complete trials never change, so a snapshot over as many
    of them as exist now is exactly the front they make."""
    if n_complete is None:
        n_complete = count_trials(study, (TrialState.COMPLETE,))
    store = Store(url)
    try:
        snapshot = store.latest_front(study.study_name)
    finally:
        store.close()
    if snapshot is not None and snapshot.n_complete_trials == n_complete:
        return [FrontMember(**member) for member in snapshot.members]
    return compute_front(study)


def export_selected(
    study: optuna.Study,
    loaded: LoadedStudy,
    out: str | Path | None = None,
    policy: str | None = None,
    overwrite: bool = False,
    sign_key: str | Path | None = None,
    objective: Objective | None = None,
    seeds: int | None = None,
) -> Path:
    """Pick a trial by policy, train its recipe with the study's `export.seeds` seeds,
    and write its export folder; the export is recorded.

    The policy's first candidate whose validation changes hold every limit on average
    over the seeds is exported; one that does not is passed over for the next, up to
    `export.finalists` candidates. When none holds, the first is exported marked as not
    within the limits across seeds (and a warning says so). `objective` trains the
    seeds (built from the study file and the cached teacher when not given). With
    `sign_key` (an Ed25519 private key) the manifest is signed before the folder
    appears (`manifest.sig`)."""
    config = loaded.config
    policy = policy or config.export.policy
    n_complete = count_trials(study, (TrialState.COMPLETE,))
    front = current_front(study, config.storage_url, n_complete)
    # The policy's order, its noise warning logged.
    candidates = logged(choose(front, policy, study, config.export.latency_budget_ms)).order
    out_path = Path(out) if out is not None else Path(config.export.dir) / config.study_name
    check_replaceable(out_path, overwrite, export_refusal)  # before any seed is trained
    trainer = _Trainer(study, loaded, objective)
    passed_over = []
    chosen = None
    for member in candidates[: config.export.finalists]:
        trial = trial_by_number(study, member.trial_number)  # its recipe, artifacts, attrs
        assert trial is not None  # a member of the front is a complete trial of the study
        found = train_seeds(
            study,
            trial,
            seeds or config.export.seeds,
            trainer.first_seed,
            config.constraints,
            trainer.retrain,
        )
        if found["within_limits"]:
            chosen = (trial, found)
            break
        passed_over.append({"trial_number": trial.number, "broken": found["broken"]})
        logger.warning(
            "trial %d passed over: across %d seeds %s",
            trial.number,
            len(found["seeds"]),
            "; ".join(found["broken"]),
        )
        chosen = chosen or (trial, found)
    assert chosen is not None  # a policy's order is never empty
    trial, judged = chosen
    if not judged["within_limits"]:
        logger.warning(
            "no candidate of %s holds the limits on average over %d seeds; exporting trial "
            "%d marked as not within them",
            policy,
            len(judged["seeds"]),
            trial.number,
        )
    if not any(not m.is_teacher for m in front):
        limits = [f"constraints.{key} {limit}" for key, _, limit, _ in config.constraints.limits()]
        if config.constraints.confidence is not None:
            limits.append(f"judged on the {config.constraints.confidence:.0%} upper bound")
        logger.warning(
            "no compressed student of %s meets the study's limits (%s): the front holds the "
            "teacher only. Relax the limits, leave constraints.confidence out, or run more "
            "trials",
            study.study_name,
            ", ".join(limits),
        )
    selection = {
        "policy": policy,
        "trials_considered": n_complete,
        "scored_on": (trial.user_attrs.get("search_split") or {}).get("split", SEARCH_SPLIT),
        "constraint_mode": trial.user_attrs.get("constraint_mode"),
        "seeds": judged,
        "passed_over": passed_over,
        "within_limits_across_seeds": judged["within_limits"],
    }
    digest = export_trial(
        trial,
        loaded,
        artifact_store(loaded),
        out_path,
        policy,
        {
            "study_name": study.study_name,
            "storage": safe_url(config.storage_url),
            "teacher": study.user_attrs.get(TEACHER_ATTR),
        },
        overwrite=overwrite,
        sign_key=sign_key,
        selection=selection,
    )
    store = Store(config.storage_url)
    try:
        store.record_export(study.study_name, trial.number, policy, str(out_path.resolve()), digest)
    finally:
        store.close()
    return out_path


class _Trainer:
    """Trains finalists' seeds with the run's objective, or with one built on first use
    from the study file and the cached teacher (an `export` long after the run)."""

    def __init__(self, study: optuna.Study, loaded: LoadedStudy, objective: Objective | None):
        self.study = study
        self.loaded = loaded
        self.objective = objective

    @property
    def first_seed(self) -> int:
        """The seed every trial of the search trained with (the task's, its data seed)."""
        return self.loaded.config.task.data.seed

    def retrain(self) -> Retrain:
        if self.objective is None:
            self.objective = self._build()
        objective = self.objective

        def train(recipe: Recipe, seed: int) -> Judgement:
            with tempfile.TemporaryDirectory(prefix="autocompress-seed-") as workdir:
                return objective.train_and_judge(recipe, Path(workdir), seed)[1]

        return train

    def _build(self) -> Objective:
        import torch

        from autocompress.search import Objective
        from autocompress.targets import build_target
        from autocompress.tasks import build_task

        config = self.loaded.config
        torch.set_num_threads(config.workers.torch_threads)
        task = build_task(config)
        target = build_target(config)
        teacher = task.teacher(config.artifacts_path / "teachers")
        comparison = compare_with_teacher(self.study, config, task, teacher, target)
        return Objective(
            self.loaded, task, teacher, target, comparison, artifact_store(self.loaded)
        )


def write_study_report(
    study: optuna.Study, loaded: LoadedStudy, out: str | Path | None = None
) -> ReportFiles:
    """The study's HTML report and front plot (default folder: `runs/reports/<study>`,
    beside the exports): the front with its held-out intervals, and what was measured
    (splits, intervals, constraint mode, trials, the last export's seeds)."""
    from autocompress.dashboard_storage import ReadOnceStorage
    from autocompress.report import write_report  # matplotlib: only when a report is asked

    config = loaded.config
    folder = Path(out) if out is not None else Path(config.export.dir).parent / "reports"
    store = Store(config.storage_url)
    try:
        exports = store.exports(study.study_name)
    finally:
        store.close()
    selected = exports[-1].trial_number if exports else None
    # Every trial is plotted: read once, as plain rows (5x faster than through the ORM).
    view = optuna.load_study(study_name=study.study_name, storage=ReadOnceStorage(study._storage))
    return write_report(
        view,
        folder / study.study_name if out is None else folder,
        title=f"{study.study_name}: front and what was measured",
        challenger_trial=selected,
        selected_trial=selected,
    )


def artifact_store(loaded: LoadedStudy) -> AtomicArtifactStore:
    path = loaded.config.artifacts_path / "trials"
    path.mkdir(parents=True, exist_ok=True)
    return AtomicArtifactStore(path)


def _create_or_resume(loaded: LoadedStudy, target: Target, start: int = 0) -> optuna.Study:
    """Load the study or create it; `start` (how many starts came before this one)
    picks the sampler's seed, so a resume or a second worker samples anew."""
    from autocompress.search import build_sampler, directions
    from autocompress.targets import fingerprint_id

    config = loaded.config
    identity = config.identity_hash()
    machine = target.fingerprint()
    storage = optuna_storage(config.storage_url, config.workers)
    sampler = build_sampler(config.sampler, start)
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage, sampler=sampler)
    except KeyError:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=storage,
            directions=directions(config.objectives.metrics),
            sampler=sampler,
        )
        with warnings.catch_warnings():  # experimental since Optuna 3.2, used by the dashboard
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.objectives.metrics))
        study.set_user_attr(IDENTITY_ATTR, identity)
        study.set_user_attr(MACHINE_ATTR, machine)
        study.set_user_attr("autocompress:study_file", str(loaded.source))
        return study
    if study.user_attrs.get(IDENTITY_ATTR) != identity:
        raise UserError(
            f"study {config.study_name!r} in {safe_url(config.storage_url)} was "
            f"created from a different task, search space, objectives or target "
            f"than {loaded.source}; its trials are not comparable. Use "
            "--study-name for a new study"
        )
    measured_on = study.user_attrs.get(MACHINE_ATTR)
    if measured_on is not None and fingerprint_id(measured_on) != fingerprint_id(machine):
        differs = sorted(k for k in machine if measured_on.get(k) != machine[k])
        raise UserError(
            f"study {config.study_name!r} was measured on another machine or runtime "
            f"(differs in: {', '.join(differs)}); latencies from two machines are not "
            "comparable, so it is not resumed here. Use --study-name for a new study on "
            "this machine, or `autocompress nightly` (which re-measures in a new study)"
        )
    return study


def _check_outputs_writable(loaded: LoadedStudy) -> None:
    """Folders the run writes to must take files: found now, not after every trial ran."""
    config = loaded.config
    for key, folder in (
        ("artifacts_dir", config.artifacts_path),
        ("export.dir", Path(config.export.dir)),
    ):
        existing = folder.absolute()
        while not existing.exists():
            existing = existing.parent
        problem = None
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        else:
            try:
                with tempfile.TemporaryFile(dir=existing):
                    pass
            except OSError as error:
                problem = f"cannot write in {existing}: {error.strerror}"
        if problem:
            raise UserError(
                f"{config.where(key)}: {folder} cannot be used ({problem}); choose a folder "
                "you can write to"
            )


def _check_policy_can_select(loaded: LoadedStudy) -> None:
    """`export.policy: trial:N` names a trial that must exist by the end of this run."""
    config = loaded.config
    policy = parse_policy(config.export.policy, config.where("export.policy"))
    if not isinstance(policy, ExplicitTrial):
        return
    number = policy.number
    existing = 0
    if database_exists(config.storage_url):
        storage = optuna_storage(config.storage_url)
        try:
            study_id = storage.get_study_id_from_name(config.study_name)
            existing = count_stored_trials(storage, study_id)
        except KeyError:
            pass
        finally:
            storage.remove_session()
            storage.engine.dispose()
    last = existing + config.n_trials - 1
    if number > last:
        raise UserError(
            f"{config.where('export.policy')}: trial {number} will not exist: the study has "
            f"{existing} trials and this run adds {config.n_trials} (numbers up to {last}); "
            "use fastest or most_accurate, or a trial number within that range"
        )


def _load_existing(loaded: LoadedStudy) -> optuna.Study:
    """Open a study that must already exist; reading never creates a database."""
    config = loaded.config
    try:
        if not database_exists(config.storage_url):
            raise KeyError(config.study_name)
        return optuna.load_study(
            study_name=config.study_name, storage=optuna_storage(config.storage_url)
        )
    except KeyError:
        overrides = "".join(
            f" {option} {value}"
            for option, value in (
                ("--study-name", config.study_name),
                ("--storage", safe_url(config.storage_url)),
            )
            if config.is_overridden(option.removeprefix("--").replace("-", "_"))
        )
        raise UserError(
            f"no study named {config.study_name!r} in {safe_url(config.storage_url)}; "
            f"run it first with `autocompress run {loaded.source}{overrides}`"
        ) from None


def compare_with_teacher(
    study: optuna.Study, config: StudyConfig, task: Task, teacher: nn.Module, target: Target
) -> TeacherComparison:
    """What every student is judged against: the teacher run on the target like any
    student, its predictions on the validation and test splits. Its scores, shape and
    cache key are kept with the study (for reports and rebuilding students).

    A study whose stored teacher scores came from the test split (made before the search
    moved to the validation split) is refused: its trials were chosen on the test split.
    """
    from autocompress.pipeline import SCORED_SPLITS

    with tempfile.TemporaryDirectory(prefix="autocompress-teacher-") as workdir:
        model = target.materialize(task, teacher, Recipe(), Path(workdir))
        predictions = {split: task.predict(model.runnable, split) for split in SCORED_SPLITS}
    comparison = TeacherComparison(config, task, predictions)
    stored = study.user_attrs.get(TEACHER_ATTR)
    if stored is not None and "test_metrics" not in stored:
        raise UserError(
            f"study {study.study_name!r} was made by an older autocompress that scored and "
            "chose its trials on the test split; they are not comparable with trials "
            "scored on the validation split. Use --study-name for a new study"
        )
    if stored is None:
        valid = comparison.teacher_metrics[SEARCH_SPLIT]
        study.set_user_attr(
            TEACHER_ATTR,
            {
                "accuracy": valid["accuracy"],
                "metrics": valid,
                "test_metrics": comparison.teacher_metrics[HELD_OUT_SPLIT],
                "rows": comparison.rows,
                "fingerprint": task.fingerprint(),
                "spec": teacher.spec,
            },
        )
    return comparison
