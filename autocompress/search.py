"""The Optuna side: samplers, suggesting recipes, the objective, and front snapshots."""

from __future__ import annotations

import hashlib
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, Trial, TrialState
from torch import nn

from autocompress.autocast import AutocastChoice
from autocompress.changes import SEARCH_SPLIT, Judgement, TeacherComparison
from autocompress.config import (
    MAXIMIZED_METRICS,
    CostControlConfig,
    LoadedStudy,
    ParamSpace,
    SamplerConfig,
    StudyConfig,
)
from autocompress.cost_summary import (
    ESTIMATE_ATTR,
    OTHER_PRECISION_ROLE,
    SKIPPED_ATTR,
    TRAINED_IN_ATTR,
    VALID_CURVE,
)
from autocompress.dashboard import (
    SPLIT_NAMES,
    attach_report_artifacts,
    completed_trial_note,
    on_front_when_complete,
    save_trial_note,
    set_constraints,
)
from autocompress.errors import TrialAborted, Unsupported, UserError
from autocompress.front import (
    TEACHER_ROLE,
    TEACHER_TRIAL_ATTR,
    front_of,
    is_feasible,
)
from autocompress.halving import RungEntry, halving_stop_reason, rungs
from autocompress.latency_estimate import LatencyEstimate, LatencyEstimator
from autocompress.pipeline import Evaluation, evaluate_recipe
from autocompress.policies import LATENCY, parse_policy
from autocompress.recipe import RECIPE_FIELDS, Recipe, define_by_run
from autocompress.store import Store
from autocompress.store.repository import FrontHead
from autocompress.store.resilience import describe, is_disk_full, retry_transient
from autocompress.store.trials import (
    complete_count_and_sum,
    count_trials,
    set_user_attrs,
    trials_by_numbers,
)
from autocompress.targets import Target
from autocompress.tasks import Task
from autocompress.trained_students import TrainedStudents, other_precisions
from autocompress.twins import EarlierTwins

MAXIMIZED = MAXIMIZED_METRICS  # accuracy, f1, roc_auc, gini, ks; brier and ece are minimised
# Scores undefined when the labels hold a single class.
TWO_CLASS_METRICS = ("roc_auc", "gini", "ks")
logger = logging.getLogger("autocompress")
EPOCH_LOG_INTERVAL_S = 30.0
"""A trial's epoch is logged when 30 s have passed since its last logged one: every
epoch of a transformer student, none of a credit MLP's millisecond epochs."""


def directions(metrics: list[str]) -> list[str]:
    return ["maximize" if m in MAXIMIZED else "minimize" for m in metrics]


def build_sampler(config: SamplerConfig, start: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler for its `start`-th start (0: the first run of the study).

    The first start uses the study file's seed as it is, so one worker with a fixed seed
    is reproducible; every later start (a resume, a second worker) derives its own seed
    from that seed and `start`: with one seed for all, a resume replayed the previous
    run's first recipes and a second worker the first one's whole sequence.
    """
    seed = sampler_seed(config.seed, start)
    if config.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if config.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate/group are "experimental" but long stable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Random trials before TPE models the results (see SamplerConfig); None: Optuna's.
        startup = config.n_startup_trials
        options = {} if startup is None else {"n_startup_trials": startup}
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, **options)


def sampler_seed(seed: int | None, start: int) -> int | None:
    """`seed` for the first start; a stable 32-bit derivation of (seed, start) after it."""
    if seed is None or start == 0:
        return seed
    digest = hashlib.sha256(f"autocompress-sampler:{seed}:{start}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def suggest_recipe(trial: Trial, space: dict[str, ParamSpace]) -> Recipe:
    """Ask the trial for every active field, in `RECIPE_FIELDS` order (define-by-run)."""
    values, _ = define_by_run(space, lambda name, param: _suggest(trial, name, param))
    return Recipe.from_dict(values)


def _suggest(trial: Trial, name: str, param: ParamSpace) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(name, list(param.choices))
    if RECIPE_FIELDS[name].kind is int:
        step = int(param.step or 1)
        return trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


@dataclass(frozen=True)
class WarmStart:
    """Params to try right after the teacher, and why (`role`: e.g. a hand recipe from
    the study file, last night's front, the deployed champion)."""

    params: dict[str, Any]
    role: str = "warm_start"


def enqueue_first_trials(study: optuna.Study, warm_starts: Sequence[WarmStart]) -> None:
    """A new study starts with the teacher (trial 0), then the warm starts in order
    (identical params only once).

    The teacher samples no params (the identity recipe may lie outside the search
    space); its recipe is in its user attributes like every other trial's.
    """
    if count_trials(study):
        return
    study.enqueue_trial({}, user_attrs={"role": TEACHER_ROLE})
    # The first trial of an empty study (under the setup lock): read alone by this number.
    study.set_user_attr(TEACHER_TRIAL_ATTR, 0)
    enqueued: list[dict[str, Any]] = []
    for warm_start in warm_starts:
        if warm_start.params in enqueued:
            continue
        enqueued.append(warm_start.params)
        study.enqueue_trial(dict(warm_start.params), user_attrs={"role": warm_start.role})


def check_metrics_defined(
    config: StudyConfig,
    labels_by_split: dict[str, np.ndarray],
    where: Callable[[str], str] | None = None,
) -> None:
    """Refuse a split students are judged on (`valid`, `test`) that holds a single
    class, naming first a ranking score (roc_auc, gini, ks) the study optimises, limits
    or selects by, which is undefined there. `where` names a key (default:
    `config.where`)."""
    where = where or config.where
    uses = [
        (f"{where('objectives.metrics')}: {m}", m, "drop the objective")
        for m in config.objectives.metrics
    ]
    uses += [
        (where(f"constraints.{key}"), metric, "drop the constraint")
        for key, metric, _, _ in config.constraints.limits()
    ]
    policy = parse_policy(config.export.policy, where("export.policy"))
    if policy.metric not in (None, LATENCY):
        uses.append(
            (f"{where('export.policy')}: {policy.name}", policy.metric, "pick another policy")
        )
    two = "both classes" if config.task.scores_bad_class else "at least two classes"
    for split, labels in labels_by_split.items():
        classes, counts = np.unique(np.asarray(labels), return_counts=True)
        if len(classes) >= 2:
            continue
        has = f"only class {classes[0]} ({counts[0]} rows)" if len(classes) else "no rows"
        named = SPLIT_NAMES.get(split, split)
        for key, metric, remedy in uses:
            if metric in TWO_CLASS_METRICS:
                raise UserError(
                    f"{key} needs {two} in the {named} split; it "
                    f"has {has}; use a larger task.data.{split}_size or {remedy}"
                )
        # Whatever the metrics: students are compared with the teacher on this split
        # (the search on validation, the held-out report on test), class by class.
        raise UserError(
            f"{where(f'task.data.{split}_size')}: the {named} split has {has}; students "
            f"are compared with the teacher on it, which needs {two}; use a larger "
            f"task.data.{split}_size (or more rows)"
        )


def pruned(
    trial: Trial, reason: str, artifact_store: FileSystemArtifactStore
) -> optuna.TrialPruned:
    """The pruned outcome of `trial`, with its reason kept for the table and in its
    `note.md` (never on the front, so not in the dashboard's note panel)."""
    trial.set_user_attr("pruned_reason", reason)
    note = f"### Trial {trial.number}: pruned\n\n{reason}\n"
    save_trial_note(trial, artifact_store, note, on_dashboard=False)
    return optuna.TrialPruned(reason)


class Objective:
    """Turns one trial into objective values; unsupported recipes become pruned trials."""

    def __init__(
        self,
        loaded: LoadedStudy,
        task: Task,
        teacher: nn.Module,
        target: Target,
        comparison: TeacherComparison,
        artifact_store: FileSystemArtifactStore,
    ) -> None:
        self.loaded = loaded
        self.task = task
        self.teacher = teacher
        self.target = target
        self.comparison = comparison
        self.artifact_store = artifact_store
        self.teacher_parameters = sum(p.numel() for p in teacher.parameters())
        self.running: Trial | None = None
        self._store: Store | None = None  # our tables, for the front (`_front_members`)
        self._members: dict[int, FrozenTrial] = {}  # the front's trials read so far
        self.twins = EarlierTwins()  # a sampler's repeats, read incrementally
        self.estimator = (
            LatencyEstimator(target, loaded.config.artifacts_path / "latency_estimates")
            if loaded.config.cost_control.measures_before_training
            else None
        )
        self.trained = (
            TrainedStudents(loaded.config.artifacts_path / "trained_students")
            if loaded.config.cost_control.try_other_precisions
            else None
        )

    def __call__(self, trial: Trial) -> list[float]:
        self.running = trial  # until the next trial: the run may fail while telling it
        try:
            return self._run(trial)
        except KeyboardInterrupt as stop:
            # Optuna fails the trial and stops the study; the table and dashboard say why.
            trial.set_user_attr("failed_reason", f"stopped by {str(stop) or 'SIGINT'}")
            raise
        except Exception as error:  # OSError, or a library's own error around ENOSPC
            if not is_disk_full(error):
                raise
            reason = (
                f"disk full: {describe(error)}; "
                f"trial {trial.number} is failed and nothing of it was half-written. Free "
                "space there and run the same command again"
            )
            trial.set_user_attr("failed_reason", reason)
            raise TrialAborted(reason) from None

    def _task_and_teacher(self, recipe: Recipe) -> tuple[Task, nn.Module]:
        """The study's task and teacher, or the ones a recipe's inputs need (trained on
        first use and cached like the study's teacher)."""
        task = self.task.for_recipe(recipe)
        if task is self.task:
            return self.task, self.teacher
        return task, task.teacher(self.loaded.config.artifacts_path / "teachers")

    def abandon_running_trial(self, reason: str) -> str:
        """After the database failed mid-trial: one quick try to fail the trial that was
        running (without retries: they just ran out); says what became of it."""
        trial = self.running
        if trial is None:
            return "No trial was running."
        storage = getattr(trial.study._storage, "_inner", trial.study._storage)  # no retries
        try:
            state = storage.get_trial(trial._trial_id).state
            if state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial._trial_id, "failed_reason", reason)
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                return f"Trial {trial.number} was marked failed."
            return f"Trial {trial.number} was recorded as {state.name}."
        except Exception:  # the database is gone: say what happens instead
            return (
                f"Trial {trial.number} could not be marked failed; the next worker to start "
                "fails it once its heartbeat is older than workers.grace_period_s."
            )

    def _run(self, trial: Trial) -> list[float]:
        config = self.loaded.config
        if trial.user_attrs.get("role") == TEACHER_ROLE:
            recipe = Recipe()
        else:
            recipe = suggest_recipe(trial, self.loaded.space)
        set_user_attrs(trial, {"recipe": recipe.to_dict(), "recipe_summary": recipe.describe})
        twin = self.twins.earlier(trial)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin.number)
            raise pruned(
                trial,
                f"same params as trial {twin.number} ({twin.state.name}): the sampler "
                "proposed them again; not run twice",
                self.artifact_store,
            )
        estimate = None
        if self.estimator is not None and trial.user_attrs.get("role") != TEACHER_ROLE:
            estimate = self._estimate_or_skip(trial, recipe)
        with tempfile.TemporaryDirectory(prefix="autocompress-trial-") as workdir:
            try:
                evaluation, judgement = self.train_and_judge(
                    recipe,
                    Path(workdir),
                    seed=self.task.seed,
                    on_epoch=EpochMonitor(
                        trial,
                        config.cost_control,
                        last_epoch=recipe.finetune_epochs,
                        latency_ms=None if estimate is None else estimate.latency_p50_ms,
                        limit_floor=self._limit_floor(),
                    ),
                    expected_p50_ms=None if estimate is None else estimate.latency_p50_ms,
                    trained=self.trained,
                )
            except (Unsupported, optuna.TrialPruned) as reason:
                raise pruned(trial, str(reason), self.artifact_store) from None
            artifacts = {
                name: upload_artifact(
                    artifact_store=self.artifact_store,
                    file_path=str(Path(workdir) / name),
                    study_or_trial=trial,
                )
                for name in evaluation.files
            }
        measurement = evaluation.measurement.to_dict()
        attrs: dict[str, Any] = {"measurement": measurement}
        if evaluation.training:
            attrs["training"] = evaluation.training
        if estimate is not None:  # how close it came: the trained model's p50 is what counts
            trained = evaluation.measurement.latency_p50_ms
            attrs[ESTIMATE_ATTR] = {
                **estimate.to_dict(),
                "trained_ratio": trained / estimate.latency_p50_ms,
            }
        attrs.update(
            student_spec=evaluation.student_spec,
            num_parameters=evaluation.num_parameters,
            artifacts=artifacts,
        )
        # Validation scores and changes (accuracy_drop, ..., brier_increase) with their
        # intervals; the held-out test split's apart, under `held_out`.
        attrs.update(judgement.user_attrs())
        set_user_attrs(trial, attrs)  # one transaction, not a commit per attribute
        set_constraints(trial, judgement.constraints)
        self._queue_other_precisions(trial, recipe, evaluation, judgement)
        observed = {**judgement.metrics, **measurement}
        values = [float(observed[metric]) for metric in config.objectives.metrics]
        self._describe_for_dashboard(trial, recipe, evaluation, judgement, values)
        return values

    def _queue_other_precisions(
        self, trial: Trial, recipe: Recipe, evaluation: Evaluation, judgement: Judgement
    ) -> None:
        """With `try_other_precisions`: a student trained here (not reused) within the
        limits is kept, and queued at the space's other precisions, to reuse it."""
        if (
            self.trained is None
            or trial.user_attrs.get("role") == TEACHER_ROLE
            or "reused_training" in evaluation.training
            or any(value > 0 for value in judgement.constraints.values())
        ):
            return
        variants = other_precisions(trial.params, self.loaded.space)
        if not variants or not self.trained.keep(evaluation.training_key):
            return
        for params in variants:
            trial.study.enqueue_trial(
                params,
                user_attrs={"role": OTHER_PRECISION_ROLE, TRAINED_IN_ATTR: trial.number},
                skip_if_exists=True,
            )
        trial.set_user_attr(
            "other_precisions_queued",
            [Recipe.from_dict({**recipe.to_dict(), **p}).precision for p in variants],
        )

    def _limit_floor(self) -> LimitFloor | None:
        """The validation score a student needs to stay within the study's limit on the
        metric its training curve tracks, when a limit is on that metric."""
        metric = self.task.validation_metric
        teacher = self.comparison.teacher_metrics[SEARCH_SPLIT].get(metric)
        for key, limited, limit, kind in self.loaded.config.constraints.limits():
            if limited == metric and kind == "drop" and teacher is not None:
                return LimitFloor(
                    teacher - limit, f"the teacher's {teacher:.4f} less {key} {limit}"
                )
        return None

    def _estimate_or_skip(self, trial: Trial, recipe: Recipe) -> LatencyEstimate:
        """The candidate's latency before training (recorded on the trial); with
        `skip_slower_than_fastest`, a pruned trial when it cannot beat the fastest
        student already within the limits."""
        assert self.estimator is not None
        task, teacher = self._task_and_teacher(recipe)
        try:
            estimate = self.estimator.estimate(task, teacher, recipe)
        except Unsupported as reason:
            raise pruned(trial, str(reason), self.artifact_store) from None
        trial.set_user_attr(ESTIMATE_ATTR, estimate.to_dict())
        if not self.loaded.config.cost_control.skip_slower_than_fastest:
            return estimate
        fastest = fastest_feasible(self._fastest_candidates(trial.study))
        if fastest is None or estimate.latency_p50_ms < fastest[1]:
            return estimate
        # The two figures were taken at different times (and one may come from the cache):
        # before skipping, both shapes are timed again side by side, now.
        rival_trial, _ = fastest
        number = rival_trial.number
        rival = Recipe.from_dict(rival_trial.user_attrs.get("recipe", {}))
        rival_key = (rival_trial.user_attrs.get(ESTIMATE_ATTR) or {}).get("key")
        timed = self.estimator.side_by_side(
            {
                "candidate": (task, teacher, recipe, estimate.key),
                "rival": (*self._task_and_teacher(rival), rival, rival_key),
            }
        )
        check = {"trial": number, "candidate_ms": timed["candidate"], "rival_ms": timed["rival"]}
        if timed["candidate"] < timed["rival"]:
            trial.set_user_attr("latency_side_by_side", check)
            return estimate
        trial.set_user_attr(SKIPPED_ATTR, check)
        raise pruned(
            trial,
            f"not trained: its shape at {recipe.precision} is not faster than trial {number}, "
            "the fastest model within the limits, timed side by side before training "
            f"({timed['candidate']:.3f} ms against {timed['rival']:.3f} ms for its shape); "
            "policy fastest cannot select it (cost_control.skip_slower_than_fastest)",
            self.artifact_store,
        )

    def train_and_judge(
        self,
        recipe: Recipe,
        folder: Path,
        seed: int,
        on_epoch: Callable[[int, float], None] | None = None,
        expected_p50_ms: float | None = None,
        trained: TrainedStudents | None = None,
    ) -> tuple[Evaluation, Judgement]:
        """Train `recipe`'s student with `seed` (or reuse one kept in `trained`), measure
        it (files in `folder`; checked against `expected_p50_ms`, its shape's p50 before
        training, when known) and judge it against the teacher. Raises `Unsupported` when
        it cannot run."""
        task, teacher = self._task_and_teacher(recipe)
        workers = self.loaded.config.workers
        evaluation = evaluate_recipe(
            task,
            teacher,
            self.target,
            recipe,
            folder,
            seed=seed,
            on_epoch=on_epoch,
            autocast=workers.autocast,
            cache_dir=self.loaded.config.artifacts_path / "autocast_probes",
            expected_p50_ms=expected_p50_ms,
            trained=trained,
        )
        return evaluation, self.comparison.judge(evaluation.predictions)

    def _describe_for_dashboard(
        self,
        trial: Trial,
        recipe: Recipe,
        evaluation: Evaluation,
        judgement: Judgement,
        values: list[float],
    ) -> None:
        """Recipe and metrics as artifacts beside the model, and a markdown note (in
        the dashboard's note panel too for the teacher and a trial joining the front)."""
        measurement = evaluation.measurement.to_dict()
        drops, constraints = judgement.changes, judgement.constraints
        attach_report_artifacts(
            trial,
            self.artifact_store,
            {
                "recipe.yaml": {
                    "recipe": recipe.to_dict(),
                    "student_spec": evaluation.student_spec,
                },
                "metrics.json": {
                    "metrics": judgement.metrics,
                    "scored_on": judgement.search_split,
                    "drops_vs_teacher": drops,
                    "change_intervals": judgement.intervals,
                    "held_out": judgement.held_out,
                    "constraint_mode": judgement.constraint_mode,
                    "constraints": constraints,
                    "measurement": measurement,
                    "num_parameters": evaluation.num_parameters,
                },
            },
        )
        curve = trial.user_attrs.get(VALID_CURVE, [])
        passes = [
            *recipe.pass_chain(self.task.pruned_units),
            f"parameters: {self.teacher_parameters:,} (teacher) → {evaluation.num_parameters:,}",
        ]
        if estimate := trial.user_attrs.get(ESTIMATE_ATTR):
            how = "cached" if estimate["cached"] else f"measured in {estimate['seconds']:.1f} s"
            passes.append(
                f"latency before training: {estimate['latency_p50_ms']:.3f} ms ({how}); "
                f"trained: {measurement['latency_p50_ms']:.3f} ms "
                f"(×{estimate['trained_ratio']:.2f})"
            )
        if curve:
            passes.append("validation score by epoch: " + ", ".join(f"{v:.4f}" for v in curve))
        if "reused_training" in evaluation.training:
            passes.append(
                f"training: none; the trained weights of trial "
                f"{trial.user_attrs.get(TRAINED_IN_ATTR, '?')} (the same torch passes and "
                "seed) at this precision"
            )
        if queued := trial.user_attrs.get("other_precisions_queued"):
            passes.append(f"queued at other precisions, from these weights: {', '.join(queued)}")
        autocast = evaluation.training.get("training_autocast")
        if autocast:
            passes.append(f"training: {AutocastChoice(**autocast).describe}")
        save_trial_note(
            trial,
            self.artifact_store,
            completed_trial_note(
                trial.number,
                recipe.describe,
                passes,
                judgement.metrics,
                drops,
                measurement,
                constraints,
                held_out=judgement.held_out,
                intervals=judgement.intervals,
                search_split=judgement.search_split,
                constraint_mode=judgement.constraint_mode,
            ),
            on_dashboard=trial.user_attrs.get("role") == TEACHER_ROLE
            or on_front_when_complete(trial, values, self._front_members(trial.study)),
        )

    def _fastest_candidates(self, study: optuna.Study) -> list[FrozenTrial]:
        """Where the fastest student within the limits is: on the front when latency is
        an objective (no trial as fast with better scores can dominate it), read in
        O(front); else among every complete trial."""
        if "latency_p50_ms" in self.loaded.config.objectives.metrics:
            return self._front_members(study)
        return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def _front_members(self, study: optuna.Study) -> list[FrozenTrial]:
        """The members of the study's latest front snapshot, those new since the last
        call read by number: O(front), whatever the number of trials. The store is
        opened on first use and kept for the worker's later trials; both are retried
        while the database blinks, as Optuna's storage is."""
        workers = self.loaded.config.workers

        def head() -> FrontHead | None:  # the latest snapshot's member numbers, or None
            if self._store is None:
                self._store = Store(self.loaded.config.storage_url, retry_s=workers.db_retry_s)
            return self._store.front_head(study.study_name)

        latest = retry_transient(head, "front_head", workers.db_retry_s)
        numbers = [] if latest is None else latest.member_numbers
        # Complete trials never change: only members new since the last call are read.
        known = {n: self._members[n] for n in numbers if n in self._members}
        known.update((t.number, t) for t in trials_by_numbers(study, set(numbers) - set(known)))
        self._members = known
        return [known[n] for n in sorted(known)]


@dataclass(frozen=True)
class LimitFloor:
    """The validation score a study's limit asks of a student, and where it comes from."""

    score: float
    source: str


class EpochMonitor:
    """Called after every fine-tuning epoch with the validation score.

    Records the curve (`valid_score_by_epoch`) and stops the trial (a pruned trial with
    the reason) when it runs over its time budget, or from `min_epochs` on, when the
    constraint rule or the median rule (see `CostControlConfig`) finds it hopeless.
    """

    def __init__(
        self,
        trial: Trial,
        settings: CostControlConfig,
        last_epoch: int,
        latency_ms: float | None = None,
        limit_floor: LimitFloor | None = None,
    ) -> None:
        self.trial = trial
        self.settings = settings
        self.limit_floor = limit_floor  # what the constraint rule asks at most
        self.last_epoch = last_epoch
        self.latency_ms = latency_ms  # measured before training: successive halving's
        self.rungs = (
            rungs(settings.min_epochs, settings.halving_rate, last_epoch)
            if settings.successive_halving and latency_ms is not None
            else []
        )
        self.started = time.monotonic()
        self.logged_at = 0.0
        self.scores: list[float] = []

    def __call__(self, epoch: int, score: float) -> None:
        self.scores.append(score)
        self.trial.set_user_attr(VALID_CURVE, self.scores)
        elapsed = time.monotonic() - self.started
        if elapsed - self.logged_at >= EPOCH_LOG_INTERVAL_S:  # slow trials only
            self.logged_at = elapsed
            logger.info(
                "trial %d epoch %d/%d: validation score %.4f (%.0f s)",
                self.trial.number,
                epoch,
                self.last_epoch,
                score,
                elapsed,
            )
        budget = self.settings.trial_budget_s
        if budget is not None and elapsed > budget:
            raise optuna.TrialPruned(
                f"over the per-trial budget of {budget:.0f} s after epoch {epoch} ({elapsed:.0f} s)"
            )
        # After the last epoch there is nothing left to save: an infeasible student is
        # measured and kept, so the sampler learns where the limit lies.
        if epoch < self.settings.min_epochs or epoch >= self.last_epoch:
            return
        if epoch in self.rungs:
            self._stop_unless_promoted(epoch, score)
        # The trials are read only for a rule that is on, once, complete ones only.
        if not (self.settings.constraint_stop or self.settings.median_stop):
            return
        complete = self.trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        reached = [  # curves of completed trials that got as far as this epoch
            curve for t in complete if len(curve := t.user_attrs.get(VALID_CURVE, [])) >= epoch
        ]
        if self.settings.constraint_stop:
            self._stop_if_out_of_reach(epoch, score, reached, complete)
        if self.settings.median_stop:
            self._stop_if_below_median(epoch, score, reached)

    def _stop_unless_promoted(self, epoch: int, score: float) -> None:
        """Successive halving at a rung: every other trial that reached `epoch` (finished,
        stopped or still running) with a latency measured before training competes."""
        assert self.latency_ms is not None
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        peers = [
            RungEntry(t.number, curve[epoch - 1], estimate["latency_p50_ms"])
            for t in self.trial.study.get_trials(deepcopy=False, states=states)
            if t.number != self.trial.number
            and len(curve := t.user_attrs.get(VALID_CURVE, [])) >= epoch
            and (estimate := t.user_attrs.get(ESTIMATE_ATTR))
        ]
        entry = RungEntry(self.trial.number, score, self.latency_ms)
        reason = halving_stop_reason(entry, peers, epoch, self.settings.halving_rate)
        if reason is not None:
            raise optuna.TrialPruned(reason)

    def _stop_if_out_of_reach(
        self,
        epoch: int,
        score: float,
        reached: list[list[float]],
        complete: list[FrozenTrial],
    ) -> None:
        """The floor is learnt: the lowest best validation score of any student that
        ended feasible (the curve need not be the constrained metric, nor at the
        student's final precision). When the limit is on the curve's own metric, the
        floor is at most what the limit asks (`limit_floor`): with few feasible students
        the learnt one sits far above it (seen: 0.8007 where the limit asked 0.7918, which
        stopped the fastest student that would have met it). No feasible student yet: no
        stopping."""
        feasible = [
            curve for t in complete if is_feasible(t) and (curve := t.user_attrs.get(VALID_CURVE))
        ]
        if not feasible:
            return
        floor = min(max(curve) for curve in feasible)
        source = f"the lowest best score of the {len(feasible)} students that met the constraints"
        if self.limit_floor is not None and self.limit_floor.score < floor:
            floor, source = (
                self.limit_floor.score,
                f"what the limit asks ({self.limit_floor.source})",
            )
        gains = [max(curve[epoch - 1 :]) - curve[epoch - 1] for curve in reached]
        reach = max([self.settings.constraint_stop_margin, *gains])
        if score + reach < floor:
            raise optuna.TrialPruned(
                f"validation score {score:.4f} after epoch {epoch} cannot reach {floor:.4f}, "
                f"{source}: no earlier trial gained more than {reach:.4f} after epoch {epoch}"
            )

    def _stop_if_below_median(self, epoch: int, score: float, reached: list[list[float]]) -> None:
        at_epoch = [curve[epoch - 1] for curve in reached]
        if len(at_epoch) >= self.settings.min_trials and score < statistics.median(at_epoch):
            raise optuna.TrialPruned(
                f"validation score {score:.4f} after epoch {epoch} is below the median "
                f"{statistics.median(at_epoch):.4f} of {len(at_epoch)} earlier trials"
            )


class FrontSnapshots:
    """Optuna callback: after every completed trial, store the front in our tables."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The trials on the study's front at this worker's last snapshot, by number:
        # complete trials never change, so they are not read again for the next one.
        self.known: dict[int, FrozenTrial] = {}

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        # A retried teacher (its first try went stale) completes under a new number.
        teacher = trial.user_attrs.get("role") == TEACHER_ROLE
        retried = teacher and study.user_attrs.get(TEACHER_TRIAL_ATTR) != trial.number
        if retried:
            study.set_user_attr(TEACHER_TRIAL_ATTR, trial.number)
        record_front(self.store, study, trial.number, from_every_trial=retried, known=self.known)


def fastest_feasible(candidates: Iterable[FrozenTrial]) -> tuple[FrozenTrial, float] | None:
    """The fastest of `candidates` within the limits and its p50 (ms), if any (the
    teacher counts: policy `fastest` selects it when no student is faster)."""
    latencies = [
        (t, float(latency))
        for t in candidates
        if is_feasible(t)
        if (latency := (t.user_attrs.get("measurement") or {}).get("latency_p50_ms")) is not None
    ]
    return min(latencies, key=lambda item: item[1], default=None)


def record_front(
    store: Store,
    study: optuna.Study,
    after_trial_number: int,
    from_every_trial: bool = False,
    known: dict[int, FrozenTrial] | None = None,
) -> None:
    """Store the front after `after_trial_number`, with the number of complete trials it
    was computed from and the sum of their numbers (the count always describes the front
    stored with it, which is how a reader knows the snapshot is current).

    Built on the study's latest snapshot, reading the trials on its front and the one
    new trial by number: O(front), not O(trials). Complete trials never change, so when
    one more trial is complete than the snapshot counted, the front is the front of its
    members and that trial; the sums of the numbers name the trial, which is not always
    `after_trial_number` (another worker's snapshot may already hold this trial, and
    miss one completed since). The front is computed from every complete trial when
    there is no such snapshot: the study's first, one converted from before v4 (no
    sum), one that missed two or more completions (workers finishing together), or
    when `from_every_trial` (a retried teacher).

    `known`, complete trials of this study by number kept from the previous call, are
    not read again; it is left holding the trials on the new front.
    """
    head = None if from_every_trial else store.front_head(study.study_name)
    # Counted after the snapshot was read: every trial it counted is complete, and counted.
    n_complete, number_sum = complete_count_and_sum(study)
    known = {} if known is None else known
    candidates = _on_front_or_new(study, head, n_complete, number_sum, known)
    if candidates is None:
        candidates = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_complete, number_sum = len(candidates), sum(t.number for t in candidates)
    front = front_of(candidates, study)
    store.record_front(
        study.study_name,
        after_trial_number,
        n_complete,
        [m.to_dict() for m in front],
        complete_number_sum=number_sum,
    )
    on_front = {m.trial_number for m in front}
    kept = {t.number: t for t in candidates if t.number in on_front}
    known.clear()
    known.update(kept)


def _on_front_or_new(
    study: optuna.Study,
    head: FrontHead | None,
    n_complete: int,
    number_sum: int,
    known: dict[int, FrozenTrial],
) -> list[FrozenTrial] | None:
    """The members of the snapshot `head` and the trial completed since, if any, read by
    number (unless `known`): their front is the front of the `n_complete` complete
    trials whose numbers sum to `number_sum`. None when the snapshot cannot tell (see
    `record_front`)."""
    if head is None or head.snapshot.complete_number_sum is None:
        return None
    previous = head.snapshot
    numbers = set(head.member_numbers)
    if n_complete == previous.n_complete_trials + 1:
        numbers.add(number_sum - previous.complete_number_sum)
    elif n_complete != previous.n_complete_trials:
        return None
    read = trials_by_numbers(study, numbers - known.keys())
    trials = sorted([*read, *(known[n] for n in numbers & known.keys())], key=lambda t: t.number)
    if len(trials) != len(numbers) or any(t.state != TrialState.COMPLETE for t in trials):
        return None  # not what the snapshot said: computed from every trial instead
    return trials
