"""Study files: YAML in, a validated `StudyConfig` out.

Validate at the edge, then trust. Every error names the file, the key path, what
was wrong and what is allowed. Inputs a study file names (search space, data) are
found relative to the study file; outputs (database, exports) go under the
current directory's `runs/` unless the file says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from autocompress.config_base import Strict as _Strict
from autocompress.errors import UserError
from autocompress.recipe import RECIPE_FIELDS, FieldSpec
from autocompress.targets import TARGETS, target_config_class
from autocompress.tasks import TASKS, task_config_class

logger = logging.getLogger("autocompress")

EMBEDDED_PREFIX = "embedded:"
DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_STORAGE_URL = f"sqlite:///{DEFAULT_RUNS_DIR / 'autocompress.db'}"
OBJECTIVE_METRICS = (
    "accuracy",
    "f1",
    "roc_auc",
    "gini",
    "ks",
    "brier",
    "ece",
    "latency_p50_ms",
    "latency_p90_ms",
    "size_bytes",
)
# Higher is better for these; every other objective metric is minimised.
MAXIMIZED_METRICS = frozenset({"accuracy", "f1", "roc_auc", "gini", "ks"})
# Scores of a bad-class probability, which only the task kinds whose settings say
# `scores_bad_class` report.
BAD_CLASS_METRICS = ("gini", "ks", "brier", "ece")
# Overrides (keyword arguments, command-line options) that set a key of another name.
OVERRIDE_KEYS = {"data": "task.data.path"}


def _registered_configs(
    names: Iterable[str], load: Callable[[str], type[BaseModel]], tag: str, what: str
) -> dict[str, type[BaseModel]]:
    """The settings class of every registered name (`load(name)`), each checked to carry
    its name as the `tag` literal its union is told apart by."""
    classes = {}
    for name in names:
        cls = load(name)
        field = cls.model_fields.get(tag)
        if field is None or get_args(field.annotation) != (name,):
            raise ValueError(
                f"{cls.__name__} is registered as {what} {name!r}: give it "
                f"the field {tag}: Literal[{name!r}]"
            )
        classes[name] = cls
    return classes


TASK_CONFIGS = _registered_configs(TASKS, task_config_class, "kind", "task kind")
"""task kind -> its settings: the `task:` sections a study file may hold, read from
`autocompress.tasks.TASKS` when this module is imported (register a task kind before)."""
TaskConfig = Annotated[Union[tuple(TASK_CONFIGS.values())], Field(discriminator="kind")]  # noqa: UP007

TARGET_CONFIGS = _registered_configs(TARGETS, target_config_class, "runtime", "runtime")
"""runtime -> its settings: the `target:` sections a study file may hold, read from
`autocompress.targets.TARGETS` when this module is imported (register a runtime before)."""
DEFAULT_RUNTIME = next(iter(TARGET_CONFIGS))
"""The runtime of a `target:` section that names none (and of a study without one)."""
TargetConfig = Annotated[Union[tuple(TARGET_CONFIGS.values())], Field(discriminator="runtime")]  # noqa: UP007
"""A study's `target:` section: the settings of its runtime (all share
`autocompress.targets.settings.MeasurementConfig`)."""


class ObjectivesConfig(_Strict):
    metrics: list[Literal[OBJECTIVE_METRICS]] = ["accuracy", "f1", "latency_p50_ms"]  # type: ignore[valid-type]
    f1_average: Literal["macro", "positive"] = "macro"


# constraints.<key> -> the metric it limits, and how: a `drop` (teacher − student, for
# scores where higher is better) or an `increase` (student − teacher, for calibration).
CONSTRAINT_LIMITS = {
    "max_accuracy_drop": ("accuracy", "drop"),
    "max_f1_drop": ("f1", "drop"),
    "max_roc_auc_drop": ("roc_auc", "drop"),
    "max_gini_drop": ("gini", "drop"),
    "max_ks_drop": ("ks", "drop"),
    "max_brier_increase": ("brier", "increase"),
    "max_ece_increase": ("ece", "increase"),
}


class ConstraintsConfig(_Strict):
    """Limits versus the teacher; a trial beyond any of them is infeasible (never on the front).
    Drops are teacher − student, increases student − teacher, on the validation split
    (the test split is held out: reported, never used for choosing).

    `confidence` (e.g. 0.95) switches from the point estimate to the upper bound of the
    change's paired bootstrap interval at that level: a student is feasible only when it
    is within the limit with that confidence. Leave it out for the point estimate."""

    max_accuracy_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.02
    max_f1_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_roc_auc_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_gini_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_ks_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_brier_increase: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_ece_increase: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None

    def limits(self) -> list[tuple[str, str, float, str]]:
        """(key, metric, limit, "drop" | "increase") for every limit the study sets."""
        return [
            (key, metric, getattr(self, key), kind)
            for key, (metric, kind) in CONSTRAINT_LIMITS.items()
            if getattr(self, key) is not None
        ]


class CostControlConfig(_Strict):
    """Stop hopeless trials early (multi-fidelity): Optuna's pruners do not work on
    multi-objective studies, so autocompress judges the validation score reported after
    every fine-tuning epoch itself, and gives each trial a time budget."""

    # The constraint rule: stop a student whose validation score, plus the most any
    # earlier trial still gained after the same epoch (at least `constraint_stop_margin`),
    # stays below the lowest best validation score of any student that met the
    # constraints. It stops only trials that would end infeasible, so fast-but-weaker
    # students the front needs keep running; until one student is feasible, it waits.
    constraint_stop: bool = False
    constraint_stop_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.02
    # The median rule (as Optuna's MedianPruner). Off by default: it compares validation
    # scores only, so in a search that trades score for latency it also stops fast,
    # slightly weaker trials.
    median_stop: bool = False
    min_epochs: Annotated[int, Field(ge=1)] = 2
    min_trials: Annotated[int, Field(ge=1)] = 5
    trial_budget_s: Annotated[float, Field(gt=0.0)] | None = None
    # Multi-objective successive halving (in the spirit of MO-ASHA): at the rungs
    # min_epochs · halving_rate^k, a student continues only when it is in the best
    # 1/halving_rate, by non-dominated rank of (validation score at that epoch, latency
    # measured before training), of the trials that reached the rung. A fast student
    # with a slightly lower score is non-dominated, so it continues where the median rule
    # stopped it. Measures every candidate's latency before training it.
    successive_halving: bool = False
    halving_rate: Annotated[int, Field(ge=2)] = 3
    # Latency before training: a student's latency depends on its shape and precision,
    # not on its trained weights, so each candidate's shape is built at its precision
    # (no fine-tuning) and measured on the target first, in seconds. With policy
    # `fastest`, a candidate measured no faster than the fastest student already within
    # the limits (confirmed by timing both shapes side by side, now) cannot change the
    # selection: it becomes a pruned trial naming that student, and is not trained.
    # Leave it off when the whole front matters.
    skip_slower_than_fastest: bool = False
    # Training is the cost; the precision is applied to the trained model. A student
    # trained within the limits is queued again at every other precision the search space
    # allows (its categorical ONNX-pass fields), and those trials load its trained
    # weights instead of training (autocompress/trained_students.py): the int8 variants
    # of a good fp32 student, in seconds. The weights of such students are kept in the
    # artifacts folder (`trained_students/`).
    try_other_precisions: bool = False

    @property
    def measures_before_training(self) -> bool:
        """Whether a rule needs each candidate's latency before it is trained."""
        return self.successive_halving or self.skip_slower_than_fastest


class SamplerConfig(_Strict):
    name: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = 0
    # How many trials TPE draws at random before it models the results (Optuna's
    # TPESampler n_startup_trials; None: Optuna's default, 10). Lower it when trials are
    # expensive: with text students (5-30 minutes each) the 10 random trials took half
    # of a 100-minute budget, and they are the very recipes the random sampler draws
    # for the same seed. As in Optuna, it counts every finished (complete or pruned)
    # trial of the study: the teacher (trial 0) and the warm-start recipes count too.
    n_startup_trials: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _startup_trials_for_tpe(self) -> SamplerConfig:
        # random draws every trial at random; nsga2 has no equivalent: its first
        # generation is random too, but its population_size sizes every generation.
        if self.n_startup_trials is not None and self.name != "tpe":
            raise ValueError(
                "n_startup_trials (how many trials TPE draws at random before it models the "
                f"results) applies to name: tpe only, not {self.name}; remove it or use "
                "name: tpe"
            )
        return self


class IntervalsConfig(_Strict):
    """How every change versus the teacher is given its uncertainty: a paired bootstrap
    (the same resampled rows for teacher and student, each class resampled within
    itself) with `resamples` resamples from `seed`, percentile interval at `confidence`."""

    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    resamples: Annotated[int, Field(ge=100)] = 1000
    seed: int = 0


def _default_policy() -> str:
    from autocompress.policies import POLICIES  # the registry's first kind is the default

    return POLICIES[0].usage


class ExportConfig(_Strict):
    policy: str = Field(default_factory=_default_policy)
    latency_budget_ms: Annotated[float, Field(gt=0.0)] | None = None
    dir: str = str(DEFAULT_RUNS_DIR / "exports")
    # Before export the selected recipe is trained again until it has been trained with
    # `seeds` seeds in all (1: only the search's own training). Its scores are reported as
    # mean ± sd over them; a recipe whose mean breaks a limit is not exported as within
    # it: the next candidate of the policy is tried, up to `finalists` candidates.
    seeds: Annotated[int, Field(ge=1)] = 3
    finalists: Annotated[int, Field(ge=1)] = 3


class WorkersConfig(_Strict):
    """How workers sharing one study notice a dead one (killed, out of memory, machine
    lost): every running trial beats every `heartbeat_interval_s`; the next worker to
    start a trial fails any trial silent for `grace_period_s` (default: twice the
    interval) and queues it again with the same params, at most `max_retry` times."""

    heartbeat_interval_s: Annotated[int, Field(ge=1)] = 60
    grace_period_s: Annotated[int, Field(ge=1)] | None = None
    max_retry: Annotated[int, Field(ge=0)] = 1
    # How long a worker keeps retrying a database that does not answer (a server
    # restart, a dropped connection, SQLite's "database is locked") before it stops.
    db_retry_s: Annotated[float, Field(ge=0.0)] = 60.0
    # torch's intra-op threads in this worker (training the teacher and students). One
    # by default: on a busy 2-core machine torch's default threads made a credit teacher
    # take 24m49s against 2m15s with one thread, and workers sharing a machine each
    # asked for every core.
    torch_threads: Annotated[int, Field(ge=1)] = 1
    # How students are fine-tuned (distillation): `off` trains in fp32; `bf16` runs each
    # step's forward and loss under torch.autocast("cpu", dtype=torch.bfloat16); `auto`
    # times a short probe of the student's own training step both ways (cached per
    # machine and student shape, under artifacts_dir/autocast_probes) and uses bf16 only
    # when it is at least MIN_AUTOCAST_SPEEDUP (autocompress/autocast.py) faster: native
    # on CPUs with AVX-512 BF16 or AMX, emulated and slower elsewhere. The teacher always
    # trains in fp32, and validation scores are always computed in fp32.
    autocast: Literal["off", "bf16", "auto"] = "off"


# What every `target:` section held before each runtime had settings of its own (see
# `StudyConfig.identity_hash`).
_FORMER_TARGET_KEYS = {"execution_provider": "CPUExecutionProvider", "intra_op_threads": 1}


class StudyConfig(_Strict):
    study_name: Annotated[str, Field(min_length=1)]
    search_space: str | dict[str, Any]
    task: TaskConfig
    storage: str | None = None
    artifacts_dir: str | None = None
    n_trials: Annotated[int, Field(ge=1)] = 30
    timeout: Annotated[float, Field(gt=0.0)] | None = None
    objectives: ObjectivesConfig = ObjectivesConfig()
    constraints: ConstraintsConfig = ConstraintsConfig()
    target: TargetConfig = Field(default_factory=TARGET_CONFIGS[DEFAULT_RUNTIME])
    sampler: SamplerConfig = SamplerConfig()
    cost_control: CostControlConfig = CostControlConfig()
    export: ExportConfig = Field(default_factory=ExportConfig)
    intervals: IntervalsConfig = IntervalsConfig()
    workers: WorkersConfig = WorkersConfig()
    # Known-good recipes (e.g. a hand recipe) tried right after the teacher: warm start.
    warm_start: list[dict[str, Any]] = []
    # Where the values came from, for messages: set by `load_study_config`, never dumped.
    _source: Path | None = PrivateAttr(default=None)
    _overridden: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("target", mode="before")
    @classmethod
    def _default_runtime(cls, value: Any) -> Any:
        """A `target:` section without `runtime` is the default runtime's."""
        if isinstance(value, dict) and "runtime" not in value:
            return {"runtime": DEFAULT_RUNTIME, **value}
        return value

    def is_overridden(self, key: str) -> bool:
        """Whether a command-line option (not the study file) set `key`."""
        return key in self._overridden

    def where(self, key: str) -> str:
        """How a message names a setting: `FILE: key.path`, marked if an override set it."""
        return _describe_key(key, self._source, self._overridden)

    @property
    def storage_url(self) -> str:
        return self.storage or DEFAULT_STORAGE_URL

    @property
    def artifacts_path(self) -> Path:
        return Path(self.artifacts_dir) if self.artifacts_dir else DEFAULT_RUNS_DIR / "artifacts"

    def identity_hash(self) -> str:
        """What makes trials of one study comparable: task, space, objectives, target.

        The data path is left out (a moved checkout is the same study); the data's
        content is covered by the teacher cache key.
        """
        keys = ("task", "search_space", "objectives", "constraints", "target")
        dumped = self.model_dump(
            include=set(keys), exclude={"task": {"data": {"path", "test_path"}, "model": {"path"}}}
        )
        # Limits added later count only when set, so studies made before them still resume.
        dumped["constraints"] = {
            key: value
            for key, value in dumped["constraints"].items()
            if value is not None or key in ("max_accuracy_drop", "max_f1_drop")
        }
        # Every runtime's section held onnxruntime's two keys until each runtime had
        # settings of its own; their defaults stand in where a runtime has none, so
        # studies made before (torch-cuda ones) still resume.
        dumped["target"] = {**_FORMER_TARGET_KEYS, **dumped["target"]}
        payload = json.dumps(dumped, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ParamSpace:
    """One searchable recipe field: a range, a list of choices, or a fixed value."""

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    fixed: Any = None

    @property
    def is_fixed(self) -> bool:
        return self.low is None and self.choices is None


@dataclass(frozen=True)
class LoadedStudy:
    """A validated study file together with its parsed search space."""

    config: StudyConfig
    space: dict[str, ParamSpace]
    source: Path


def load_study_config(path: str | Path, **overrides: Any) -> LoadedStudy:
    """Read, resolve and validate a study file; `overrides` use the file's own key names.

    Recognised overrides: study_name, storage, n_trials, timeout, data (the data file),
    sampler_seed.
    A value of None leaves the file's value alone.
    """
    source = Path(path)
    raw = _read_yaml(source)
    base = source.parent
    task = raw.get("task")
    for section, key in (("data", "path"), ("data", "test_path"), ("model", "path")):
        inputs = task.get(section) if isinstance(task, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get(key), str):
            inputs[key] = _resolve_input(base, inputs[key])
    if isinstance(raw.get("search_space"), str):
        raw["search_space"] = _resolve_input(base, raw["search_space"])
    overridden = frozenset(key for key, value in overrides.items() if value is not None)
    for key in overridden:
        value = overrides[key]
        if key == "data":
            data_path = str(Path(value).resolve())
            if task is None:
                task = raw["task"] = {}
            if isinstance(task, dict):
                if task.get("data") is None:
                    task["data"] = {}
                if isinstance(task["data"], dict):
                    task["data"]["path"] = data_path
        elif key == "sampler_seed":
            if not isinstance(raw.get("sampler"), dict):
                raw["sampler"] = {}
            raw["sampler"]["seed"] = value
        else:
            raw[key] = value
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise UserError(_format_validation_error(source, error, overridden)) from None
    config._source = source
    config._overridden = overridden
    if isinstance(config.search_space, str):
        space_file = Path(config.search_space)
        space = parse_search_space(
            _read_yaml(space_file, referrer=f"{source}: search_space"), space_file
        )
    else:
        space = parse_search_space(config.search_space, source, prefix="search_space.")
    _check_fields_apply(space, config.task, config.target.runtime, config.where("search_space"))
    _check_transform_search(config, space)
    _check_consistency(config, source)
    _check_warm_start(config.warm_start, space, config.where("warm_start"))
    return LoadedStudy(config=config, space=space, source=source)


StudySource = str | Path | LoadedStudy
"""A study file to read, or one read already (the CLI reads a file once and passes it on)."""
RUN_OVERRIDES = ("study_name", "n_trials", "timeout", "sampler_seed")
"""The overrides a study read already can still take: none of them names a file."""


def as_loaded(study: StudySource, **overrides: Any) -> LoadedStudy:
    """`study` read and validated with `overrides` (see `load_study_config`); a study read
    already is not read again, and takes only `RUN_OVERRIDES` (None: left alone)."""
    if not isinstance(study, LoadedStudy):
        return load_study_config(study, **overrides)
    given = {key: value for key, value in overrides.items() if value is not None}
    if unknown := sorted(set(given) - set(RUN_OVERRIDES)):
        raise TypeError(f"{unknown} are resolved when the study file is read: pass them there")
    if not given:
        return study
    config = study.config
    update = {key: given[key] for key in ("study_name", "n_trials", "timeout") if key in given}
    if "sampler_seed" in given:
        update["sampler"] = config.sampler.model_copy(update={"seed": given["sampler_seed"]})
    changed = config.model_copy(update=update)
    changed._overridden = config._overridden | frozenset(given)
    return replace(study, config=changed)


def parse_search_space(
    raw: dict[str, Any], source: Path, prefix: str = ""
) -> dict[str, ParamSpace]:
    """Turn `{field: {low, high} | {choices} | value}` into `ParamSpace`s, checked per field."""
    space: dict[str, ParamSpace] = {}
    for name, value in raw.items():
        where = f"{source}: {prefix}{name}"
        spec = RECIPE_FIELDS.get(name)
        if spec is None:
            allowed = ", ".join(RECIPE_FIELDS)
            raise UserError(f"{where}: unknown search-space key; allowed keys: {allowed}")
        space[name] = _parse_param(name, value, spec, where)
    if not space:
        raise UserError(
            f"{source}: the search space is empty; name at least one of {', '.join(RECIPE_FIELDS)}"
        )
    return space


def _check_fields_apply(
    space: dict[str, ParamSpace], task: BaseModel, runtime: str, where: str
) -> None:
    """A field the task or target cannot act on would be searched for nothing: refuse it.

    A field names what it needs (`FieldSpec.needs`); the task kind's settings class says
    what it offers (`offers`)."""
    offers = getattr(type(task), "offers", frozenset())
    for name in space:
        for need in RECIPE_FIELDS[name].needs:
            if need.capability not in offers:
                raise UserError(
                    f"{where}.{name}: needs {need.words} ({need.capability}), which task kind "
                    f"{task.kind!r} does not offer; remove it from the search space"
                )
        runtimes = RECIPE_FIELDS[name].runtimes or tuple(TARGETS)
        if runtime not in runtimes:
            raise UserError(
                f"{where}.{name}: does not apply to target.runtime {runtime!r} (only to "
                f"{', '.join(runtimes)}); remove it from the search space"
            )


def _parse_param(name: str, value: Any, spec: FieldSpec, where: str) -> ParamSpace:
    if not isinstance(value, dict):
        _check_value(value, spec, where)
        return ParamSpace(name=name, fixed=value)
    unknown = set(value) - {"low", "high", "step", "log", "choices"}
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {sorted(unknown)}; "
            "use {low, high, step, log} for a range or {choices: [...]}"
        )
    if "choices" in value:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.choices: empty search range; give a non-empty list")
        for choice in choices:
            _check_value(choice, spec, f"{where}.choices")
        return ParamSpace(name=name, choices=tuple(choices))
    if spec.choices is not None:
        raise UserError(f"{where}: takes {{choices: [...]}} from {list(spec.choices)}, not a range")
    if "low" not in value or "high" not in value:
        raise UserError(f"{where}: a range needs both 'low' and 'high'")
    low, high = value["low"], value["high"]
    _check_value(low, spec, f"{where}.low")
    _check_value(high, spec, f"{where}.high")
    if low > high:
        raise UserError(f"{where}: empty search range (low {low} > high {high}); make low <= high")
    step = value.get("step")
    if step is not None and (not _is_kind(step, float) or step <= 0 or step > high - low > 0):
        raise UserError(
            f"{where}.step: {step!r} must be a positive number no larger than "
            f"high - low ({high - low})"
        )
    log = bool(value.get("log", False))
    if log and low <= 0:
        raise UserError(f"{where}: log=true needs low > 0 (got {low})")
    return ParamSpace(name=name, low=low, high=high, step=step, log=log)


def _check_value(value: Any, spec: FieldSpec, where: str) -> None:
    if not _is_kind(value, spec.kind):
        raise UserError(f"{where}: expected {spec.kind.__name__}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise UserError(f"{where}: {value!r} is not allowed; allowed values: {list(spec.choices)}")
    if spec.low is not None and not (spec.low <= value <= spec.high):
        raise UserError(
            f"{where}: {value!r} is outside the allowed range [{spec.low}, {spec.high}]"
        )


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _check_transform_search(config: StudyConfig, space: dict[str, ParamSpace]) -> None:
    """A searched `numeric_transform` needs columns to apply to, and the reverse."""
    searched = getattr(getattr(config.task, "preprocessing", None), "searched_columns", [])
    if "numeric_transform" in space and not searched:
        raise UserError(
            f"{config.where('task.preprocessing.searched_columns')}: the search space names "
            "numeric_transform but no column is searched; list the numeric columns (names "
            "or globs, e.g. [PAY_AMT*]) whose transform the sampler may choose"
        )
    if searched and "numeric_transform" not in space:
        raise UserError(
            f"{config.where('task.preprocessing.searched_columns')}: {searched} are searched "
            "but the search space has no numeric_transform field; add one, e.g. "
            "numeric_transform: {choices: [declared, none, quantile]}, or remove the key"
        )


def _check_consistency(config: StudyConfig, source: Path) -> None:
    from autocompress.policies import parse_policy  # light; the registry owns the names

    policy = parse_policy(config.export.policy, f"{source}: export.policy")
    metrics = config.objectives.metrics
    if len(set(metrics)) != len(metrics):
        raise UserError(f"{source}: objectives.metrics: {metrics} names a metric twice")
    workers = config.workers
    if (
        workers.grace_period_s is not None
        and workers.grace_period_s <= workers.heartbeat_interval_s
    ):
        raise UserError(
            f"{source}: workers.grace_period_s: {workers.grace_period_s} must be longer than "
            f"workers.heartbeat_interval_s ({workers.heartbeat_interval_s}), or a healthy "
            "trial looks dead between two beats; raise it or leave it out (twice the interval)"
        )
    limits = config.constraints.limits()
    if config.cost_control.skip_slower_than_fastest and not policy.selects_fastest:
        raise UserError(
            f"{source}: cost_control.skip_slower_than_fastest: true skips students slower "
            f"than the fastest one within the limits, but export.policy {policy.name!r} "
            "may select a slower student; use export.policy: fastest or turn "
            "skip_slower_than_fastest off"
        )
    if config.cost_control.constraint_stop and not limits:
        raise UserError(
            f"{source}: cost_control.constraint_stop: true needs a limit in constraints "
            f"({', '.join(CONSTRAINT_LIMITS)}) to stop trials against; set one or turn "
            "constraint_stop off"
        )
    if not config.task.scores_bad_class:
        uses = [(f"objectives.metrics: {m}", m) for m in metrics]
        uses += [(f"constraints.{key}", metric) for key, metric, _, _ in limits]
        uses += [(f"export.policy: {policy.name}", policy.metric)]
        for key, metric in uses:
            if metric in BAD_CLASS_METRICS:
                kinds = [kind for kind, cls in TASK_CONFIGS.items() if cls.scores_bad_class]
                raise UserError(
                    f"{source}: {key}: {metric} scores a bad-class probability, which only "
                    f"{' and '.join(kinds)} tasks report ({', '.join(BAD_CLASS_METRICS)}); "
                    f"{config.task.kind} tasks report accuracy, f1 and roc_auc"
                )


def _check_warm_start(
    recipes: list[dict[str, Any]], space: dict[str, ParamSpace], where: str
) -> None:
    """Each warm-start recipe names only searched fields, with values the space contains."""
    for index, recipe in enumerate(recipes):
        for name, value in recipe.items():
            key = f"{where}[{index}].{name}"
            param = space.get(name)
            if param is None or param.is_fixed:
                searched = [n for n, p in space.items() if not p.is_fixed]
                raise UserError(
                    f"{key}: not a searched field of this study; searched: {', '.join(searched)}"
                )
            _check_value(value, RECIPE_FIELDS[name], key)
            inside = (
                value in param.choices
                if param.choices is not None
                else param.low <= value <= param.high
            )
            if not inside:
                allowed = (
                    list(param.choices)
                    if param.choices is not None
                    else f"[{param.low}, {param.high}]"
                )
                raise UserError(f"{key}: {value!r} is outside the search space {allowed}")
        _warn_of_sampled_fields(recipe, space, f"{where}[{index}]")


def _warn_of_sampled_fields(recipe: dict[str, Any], space: dict[str, ParamSpace], key: str) -> None:
    """Optuna samples what an enqueued trial leaves out: say so, since a hand recipe
    that silently gets a random value is not the recipe its author wrote."""
    values = {**{n: p.fixed for n, p in space.items() if p.is_fixed}, **recipe}
    left_out = [
        name
        for name, param in space.items()
        if not param.is_fixed and name not in recipe and RECIPE_FIELDS[name].active(values)
    ]
    if left_out:
        logger.warning(
            "%s: %s not given; the sampler chooses %s for this recipe",
            key,
            ", ".join(left_out),
            "it" if len(left_out) == 1 else "them",
        )


def _resolve_input(base: Path, value: str) -> str:
    if value.startswith(EMBEDDED_PREFIX):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        super().__init__(key)
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """`yaml.SafeLoader` (safe: no Python objects) that refuses a key given twice in one
    mapping instead of keeping the last value without a word. libyaml's parser when
    PyYAML has it: the pure-Python one spent tens of ms on a study file, every command."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first_seen:
                    raise _DuplicateKey(key, first_seen[key], line)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            first_seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, referrer: str | None = None) -> dict[str, Any]:
    """A YAML mapping; `referrer` (`FILE: key`) names the study-file key that points here."""
    if not path.is_file():
        if referrer:
            raise UserError(
                f"{referrer}: file not found: {path}; fix the path (relative paths in a "
                "study file are resolved against the study file's folder)"
            )
        raise UserError(f"{path}: study file not found; check the path")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except _DuplicateKey as duplicate:
        raise UserError(
            f"{path}: key {duplicate.key!r} appears twice in one mapping (lines "
            f"{duplicate.first_line} and {duplicate.second_line}); YAML would silently "
            "keep the last one. Keep one of them"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{at}: {problem}; fix the syntax there") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file; expected a YAML file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the file: {error.strerror}") from None
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}: {raw!r:.60}"
        raise UserError(
            f"{path}: expected a mapping of `key: value` lines at the top level, got {got}"
        )
    return raw


def _describe_key(key: str, source: Path | None, overridden: frozenset[str] = frozenset()) -> str:
    for name in overridden:
        if OVERRIDE_KEYS.get(name, name) == key:
            key = f"{key} (from --{name.replace('_', '-')})"
            break
    return f"{source}: {key}" if source is not None else key


def _format_validation_error(
    source: Path, error: ValidationError, overridden: frozenset[str] = frozenset()
) -> str:
    """One line per wrong key; the alternatives of a union are merged into one line."""
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        loc = _key_path(item["loc"])
        if item["type"] == "union_tag_invalid":  # the tag's own key: task.kind, target.runtime
            loc = (*loc, item["ctx"]["discriminator"].strip("'"))
        key = _describe_key(
            ".".join(str(part) for part in loc) or "(top level)", source, overridden
        )
        if item["type"] == "union_tag_invalid":
            tag, allowed = item["ctx"]["tag"], item["ctx"]["expected_tags"]
            text = f"{tag!r} is not allowed; allowed values: {allowed}"
        elif item["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(item["loc"][:-1]))
            text = f"unknown key; allowed keys: {allowed}"
        elif item["type"] == "missing":
            text = "required key is missing; add it"
        elif item["type"] == "model_type":
            allowed = ", ".join(_allowed_keys(item["loc"]))
            text = f"expected a mapping with the keys {allowed} (got {item.get('input')!r})"
        else:
            text = item["msg"]
            others = problems.get(key)
            if others and text.startswith("Input should be "):
                text = text[len("Input should be ") :]
            text = f"{text} (got {item.get('input')!r})"
            if others:
                others[-1] = others[-1].rsplit(" (got ", 1)[0] + " or " + text
                continue
        problems.setdefault(key, []).append(text)
    return "\n".join(f"{key}: {text}" for key, texts in problems.items() for text in texts)


def _key_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pydantic error location as the user's key path: union member tags dropped."""
    return _walk(loc)[0]


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _walk(loc)[1]
    return list(model.model_fields) if model is not None else []


def _walk(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], type[BaseModel] | None]:
    """Follow an error location through the config models.

    Inside a model every part is a key (a field, or the unknown key itself). A
    discriminated union (the task kinds, the runtimes) adds its tag, which is not the
    user's key; below a plain field only list indices are the user's, strings are union
    tags.
    """
    parts: list[Any] = []
    model: type[BaseModel] | None = StudyConfig
    members: dict[str, type[BaseModel]] | None = None
    for part in loc:
        if members is not None:
            model, members = members.get(str(part)), None
            continue
        if model is None:
            if isinstance(part, int):
                parts.append(part)
            continue
        parts.append(part)
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            members = _tagged_members(annotation, field.discriminator if field else None)
            model = None
    return tuple(parts), model


def _tagged_members(annotation: Any, tag: Any) -> dict[str, type[BaseModel]] | None:
    """`{tag value: model}` for a union of models told apart by the literal field `tag`
    (`kind`, `runtime`), else None."""
    members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if not isinstance(tag, str) or not members or any(tag not in m.model_fields for m in members):
        return None
    return {get_args(m.model_fields[tag].annotation)[0]: m for m in members}
