"""Nightly re-optimization with a champion / challenger decision.

One run: take the study's database lock, create a dated study warm-started with
last night's front and the deployed champion, search, then re-measure the
challenger (today's selection) and the champion side by side on this machine and
replace the champion only when the policy says the challenger is better beyond
measurement noise. Every run writes an HTML report with the Pareto plot.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocompress.config import LoadedStudy, StudySource, as_loaded
from autocompress.errors import UserError
from autocompress.policies import Contender, Decision, Duel, parse_policy
from autocompress.registry import ModelVersion, Registry
from autocompress.store import Store, check_reachable
from autocompress.store.locks import hold_lock

if TYPE_CHECKING:
    import optuna

    from autocompress.api import Callback, StudyResult
    from autocompress.report import ReportFiles
    from autocompress.search import WarmStart

# torch, onnxruntime and the search stack are imported only once the lock is held:
# a run that finds the lock taken answers at once instead of after a long import.

NIGHTLY_TAG = ".nightly."
MODEL_FILE = "model.onnx"
logger = logging.getLogger("autocompress")


@dataclass(frozen=True)
class Today:
    """Both contenders measured here and now, on the machine and runtime named."""

    contenders: dict[str, Contender]
    n_rows: int
    machine_id: str


@dataclass(frozen=True)
class NightlyOutcome:
    study_name: str
    decision: Decision
    previous_champion: ModelVersion | None
    champion: ModelVersion
    challenger: ModelVersion
    report: ReportFiles
    warm_started: list[int] = field(default_factory=list)


def nightly_study_name(base: str, now: datetime) -> str:
    return f"{base}{NIGHTLY_TAG}{now:%Y%m%dT%H%M%SZ}"


def decide(
    policy: str,
    challenger: Contender,
    champion: Contender | None,
    n_rows: int,
    latency_budget_ms: float | None = None,
) -> Decision:
    """Replace only when the challenger is feasible and better by the policy beyond
    noise (`Policy.beats`: how each policy tells noise from a gain)."""
    parsed = parse_policy(policy, "export.policy", ranking=True)
    if champion is None:
        return Decision(True, "no champion yet: the first selection becomes the champion")
    if not champion.feasible and challenger.feasible:
        return Decision(True, "the champion no longer meets the study's constraints today")
    if not challenger.feasible:
        return Decision(False, "the challenger does not meet the study's constraints")
    return parsed.beats(Duel(challenger, champion, n_rows, latency_budget_ms))


def run_nightly(
    study_file: StudySource,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    data: str | Path | None = None,
    rounds: int = 7,
    lock_ttl_s: float = 6 * 3600,
    now: datetime | None = None,
    report_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> NightlyOutcome:
    """One nightly run; `n_trials` sampled trials come on top of the warm starts.
    `progress` shows Optuna's progress bar (the CLI draws its own)."""
    now = now or datetime.now(UTC)
    loaded = as_loaded(study_file, storage=storage, data=data)
    config = loaded.config
    base = config.study_name
    parse_policy(config.export.policy, config.where("export.policy"), ranking=True)
    check_reachable(config.storage_url)
    with hold_lock(config.storage_url, f"nightly:{base}", lock_ttl_s) as lock:
        from autocompress.api import run_study

        _check_target_reloads(loaded)

        Store(config.storage_url).close()  # our tables, the registry's included
        with Registry(config.storage_url) as registry:
            champion = registry.champion(base)
            recipe = champion_params(config.storage_url, champion) if champion else None
            warm_starts = _warm_starts(config.storage_url, base, recipe)
            name = nightly_study_name(base, now)
            planned = len(warm_starts) + 1 + (n_trials or config.n_trials)
            logger.info(
                "nightly %s: %d warm starts (previous front and champion), %d trials in all",
                name,
                len(warm_starts),
                planned,
            )
            result = run_study(
                loaded,
                study_name=name,
                n_trials=planned,
                # A new seed each night, so the sampled trials do not repeat last night's.
                sampler_seed=(config.sampler.seed or 0) + zlib.crc32(name.encode()) % 2**20,
                warm_starts=warm_starts,
                callbacks=[lambda _study, _trial: lock.refresh(), *callbacks],
                progress=progress,
            )
            return _decide_and_record(result, registry, champion, recipe, rounds, now, report_dir)


def _warm_starts(url: str, base: str, champion_recipe: dict[str, Any] | None) -> list[WarmStart]:
    """Last night's front (not the teacher: every study tries it first), then the
    champion's recipe (its trial's params)."""
    import optuna

    from autocompress.api import current_front
    from autocompress.search import WarmStart
    from autocompress.store import optuna_storage

    storage = optuna_storage(url)
    earlier = sorted(
        n for n in optuna.get_all_study_names(storage) if n.startswith(base + NIGHTLY_TAG)
    )
    starts = []
    if earlier:
        previous = optuna.load_study(study_name=earlier[-1], storage=storage)
        starts += [
            WarmStart(member.params, "previous_front")
            for member in current_front(previous, url)  # its snapshot, when current
            if not member.is_teacher
        ]
    if champion_recipe:  # {} is the teacher, which every study tries first anyway
        starts.append(WarmStart(champion_recipe, "champion"))
    return starts


def champion_params(url: str, champion: ModelVersion) -> dict[str, Any]:
    """The params of the trial a registered version was exported from ({} = teacher)."""
    import optuna

    from autocompress.store import optuna_storage
    from autocompress.store.trials import trial_by_number

    source = optuna.load_study(study_name=champion.source_study, storage=optuna_storage(url))
    trial = trial_by_number(source, champion.source_trial)  # that trial alone
    if trial is None:
        raise KeyError(f"study {champion.source_study!r} has no trial {champion.source_trial}")
    return dict(trial.params)


def _decide_and_record(
    result: StudyResult,
    registry: Registry,
    champion: ModelVersion | None,
    champion_recipe: dict[str, Any] | None,
    rounds: int,
    now: datetime,
    report_dir: str | Path | None,
) -> NightlyOutcome:
    from autocompress.api import export_selected
    from autocompress.report import write_report

    loaded, study = result.loaded, result.study
    config = loaded.config
    base = _base_name(study.study_name)
    export_dir = Path(config.export.dir) / "nightly" / study.study_name
    export_selected(study, loaded, export_dir, config.export.policy)
    challenger_version = registry.register(
        export_dir, model=base, reason=f"nightly {study.study_name}: today's selection"
    )
    champion_dir = registry.load(champion.version) if champion is not None else None
    today = _measure_today(loaded, study, export_dir, champion_dir, rounds)
    decision = decide(
        config.export.policy,
        today.contenders["challenger"],
        today.contenders.get("champion"),
        today.n_rows,
        config.export.latency_budget_ms,
    )
    successor = challenger_version if decision.replace else champion
    assert successor is not None  # with no champion, the challenger always wins
    verdict, tone = "champion kept: ", "neutral"  # the usual night: nothing to act on
    if decision.replace:
        verdict = "champion replaced: " if champion is not None else "champion set: "
        defender = today.contenders.get("champion")
        tone = "alert" if defender is not None and not defender.feasible else "good"
    # The report is written before the registry changes: a failure leaves both as they were.
    report = write_report(
        study,
        Path(report_dir or Path(config.export.dir).parent / "reports") / study.study_name,
        title=f"Nightly {base} — {now:%Y-%m-%d %H:%M} UTC",
        champion_trial=_champion_trial(study, champion_recipe),
        challenger_trial=challenger_version.source_trial,
        decision=verdict + decision.reason,
        decision_tone=tone,
        sections=_report_sections(today, champion, challenger_version, successor),
    )
    if decision.replace:
        registry.promote(challenger_version.version, reason=decision.reason)
    return NightlyOutcome(
        study_name=study.study_name,
        decision=decision,
        previous_champion=champion,
        champion=registry.get(successor.version),
        challenger=challenger_version,
        report=report,
        warm_started=[
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("role") in ("previous_front", "champion")
        ],
    )


def _measure_today(
    loaded: LoadedStudy,
    study: optuna.Study,
    challenger_dir: Path,
    champion_dir: Path | None,
    rounds: int,
) -> Today:
    """Score and time the challenger and the champion here and now, interleaved.

    Stored latencies from another night (maybe another machine) are never compared:
    both exported models run in this process, in alternating rounds.
    """
    from autocompress.api import TEACHER_ATTR
    from autocompress.changes import SEARCH_SPLIT, drops_and_constraints
    from autocompress.targets import ReloadsExports, build_target, fingerprint_id
    from autocompress.targets.measurement import interleaved_rounds
    from autocompress.tasks import build_task

    config = loaded.config
    task = build_task(config)
    target = build_target(config)
    assert isinstance(target, ReloadsExports)  # run_nightly checked the runtime
    teacher = study.user_attrs[TEACHER_ATTR]["metrics"]
    folders = {"challenger": challenger_dir}
    if champion_dir is not None:
        folders["champion"] = champion_dir
    sessions = {name: target.load(folder / MODEL_FILE) for name, folder in folders.items()}
    feed = task.measurement_feed(config.target.batch_size)
    p50s = interleaved_rounds(
        lambda name: target.measure(sessions[name], feed), list(sessions), rounds
    )
    contenders = {}
    for name, session in sessions.items():
        metrics = task.evaluate(session, SEARCH_SPLIT)
        contenders[name] = Contender(
            name=name,
            metrics=metrics,
            feasible=all(
                value <= 0
                for value in drops_and_constraints(config.constraints, teacher, metrics)[1].values()
            ),
            p50_rounds=p50s[name],
        )
    return Today(contenders, len(task.labels(SEARCH_SPLIT)), fingerprint_id(target.fingerprint()))


def _check_target_reloads(loaded: LoadedStudy) -> None:
    """A nightly re-measures the champion and the challenger from their export folders:
    the study's target must be able to run an exported model again."""
    from autocompress.targets import TARGETS, ReloadsExports, target_class

    runtime = loaded.config.target.runtime
    if issubclass(target_class(runtime), ReloadsExports):
        return
    able = [name for name in TARGETS if issubclass(target_class(name), ReloadsExports)]
    raise UserError(
        f"{loaded.config.where('target.runtime')}: nightly runs re-measure the exported "
        f"champion and challenger, and runtime {runtime!r} cannot run an exported model "
        f"again; use {' or '.join(able)}"
    )


def _champion_trial(study: optuna.Study, champion_recipe: dict[str, Any] | None) -> int | None:
    """The trial of tonight's study that re-ran the champion's recipe (warm-started, so
    it is there unless it failed); None on the first night. Today's challenger is
    marked as the challenger, never as the champion, whatever the decision."""
    from optuna.trial import TrialState

    if champion_recipe is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.params == champion_recipe:
            return trial.number
    return None


def _report_sections(
    today: Today,
    champion: ModelVersion | None,
    challenger: ModelVersion,
    successor: ModelVersion,
) -> list[tuple[str, str]]:
    lines = []
    for name, contender in today.contenders.items():
        rounds = ", ".join(f"{v:.4f}" for v in contender.p50_rounds)
        lines.append(
            f"{name}: validation accuracy {contender.metrics['accuracy']:.4f}, f1 "
            f"{contender.metrics['f1']:.4f}, feasible {contender.feasible}, p50 "
            f"{contender.p50:.4f} ms (round p50s: {rounds})"
        )
    provenance = [f"today's machine and runtime: {today.machine_id}"]
    if champion is not None:
        stored = champion.metrics.get("measurement", {}).get("machine_id")
        same = stored == today.machine_id
        provenance.append(
            f"champion v{champion.version} was measured on {stored} when it was selected "
            f"({'the same machine and runtime' if same else 'ANOTHER machine or runtime'}); "
            "the decision uses today's measurements of both models only"
        )
    return [
        ("Champion vs challenger, measured today in one process", "\n".join(lines)),
        ("Measurement provenance", "\n".join(provenance)),
        (
            "Registry",
            f"today's selection registered as v{challenger.version}; champion after this "
            f"run: v{successor.version} (from {successor.source_study}, trial "
            f"{successor.source_trial})",
        ),
    ]


def _base_name(study_name: str) -> str:
    return study_name.split(NIGHTLY_TAG, 1)[0]
