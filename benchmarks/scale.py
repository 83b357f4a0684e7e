"""Large studies: read commands, per-trial bookkeeping, dashboard and database size.

Builds studies of 1k, 10k and 50k trials with the real per-trial layout, on SQLite or
PostgreSQL, and measures what a large study costs (project issue 16):

- cold `autocompress front --json` and `autocompress export` as whole processes (wall
  time; the peak memory (max RSS) of `front`, measured by GNU time);
- the front computed in-process from every complete trial, and read from the snapshot;
- the per-trial bookkeeping: what the search does once a trial is judged (user
  attributes, constraints, artifacts, the dashboard note, Optuna's tell, the front
  snapshot), timed while adding trial N+1 to a study of N, against a fresh study's;
- the database size, and that of the front snapshot tables;
- optuna-dashboard's study page: a real `autocompress dashboard` process on 127.0.0.1,
  the time and bytes of the API request that returns every trial.

How a study is built: the tiny German credit study of the tests runs for real (teacher,
baselines, 4 trials: one warm start with a fine-tuned student, three sampled), so the
teacher, the artifacts and our tables are real. One real student is trained again to
get a real `Evaluation` and `Judgement`; every synthetic trial then runs through the
product's own `Objective` (`study.optimize` with the `FrontSnapshots` callback, as
`autocompress run` does), with `train_and_judge` replaced by a copy of that real
result whose scores and latency are set per trial. So each synthetic trial gets what a
real one gets, written by the same functions (recipe, curve, measurement, changes,
constraints, model and report artifacts, note, snapshot), and follows any change to
them. Its params are the real student's, with the distillation floats moved per trial
(no two trials share params). A share of the synthetic trials is on the front
(`--front small`: 1%, `large`: 20%; all more accurate and slower than every real
trial), 30% of the others break the accuracy limit (and are faster), the rest are
dominated by the real student they copy: policy `fastest` exports a real trial, and
with the tiny study's `export.seeds: 1` the export trains nothing.

Building costs what the search's bookkeeping costs, trial by trial: about 0.2 s a trial
on SQLite (2026-12, a 2-core Xeon), not growing with the study, so 10k trials take
about half an hour.

`--objective-trials N` builds N trials that way and adds the rest as copies of them
(in SQL, see `Builder.clone`: the same attributes, artifacts and constraints, none of
the bookkeeping, then one front snapshot from every trial): a 50k study in minutes. The
trials timed for the bookkeeping at N always go through the Objective.

Databases are kept under runs/benchmarks/scale/ and reused (and topped up: an
interrupted build resumes) unless --fresh. The `scale` section of BENCHMARKS.md shows
every database measured there (each row with its date and commit).

    python benchmarks/scale.py [--sizes 1000 10000 50000] [--storage sqlite|postgresql]
        [--postgres-url URL] [--front small|large] [--repeats 3] [--objective-trials N]
        [--fresh] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from _report import BENCHMARKS, REPO, machine_line, replace_section, versions_line
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

ROOT = REPO / "runs" / "benchmarks" / "scale"
STUDY_NAME = "scale"
REAL_TRIALS = 4  # run for real: the teacher, the warm start below, two sampled students
FRONT_SHARES = {"small": 0.01, "large": 0.20}
INFEASIBLE_SHARE = 0.30  # of the synthetic trials off the front
GOLDEN = (math.sqrt(5) - 1) / 2
TIME = "/usr/bin/time"  # GNU time: the peak memory of a child
# A student that fine-tunes (so its distillation floats are active): the template.
TEMPLATE_PARAMS = {
    "pruning_ratio": 0.3,
    "pruning_importance": "l1",
    "finetune_epochs": 1,
    "kd_temperature": 2.0,
    "kd_alpha": 0.5,
    "bits": 32,
}
TARGETS = {
    "front_s": 2.0,  # at 10k, whole process
    "export_s": 2.0,  # at 10k, whole process
    "compute_s": 0.5,  # at 10k, in-process
    "bookkeeping_ratio": 2.0,  # at 10k, against a fresh study
    "dashboard_s": 10.0,  # at 10k
    "front_rss_mb": 500.0,  # at 50k
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AUTOCOMPRESS_TEST_POSTGRES_URL"),
        help="a PostgreSQL server (default: AUTOCOMPRESS_TEST_POSTGRES_URL); each "
        "database is a schema of its own there",
    )
    parser.add_argument("--front", choices=sorted(FRONT_SHARES), default="small")
    parser.add_argument("--repeats", type=int, default=3, help="of every timed read")
    parser.add_argument(
        "--measured", type=int, default=5, help="trials added to time the bookkeeping"
    )
    parser.add_argument(
        "--objective-trials",
        type=int,
        default=None,
        help="build at most this many trials through the Objective, the rest as copies "
        "of those (fast; see Builder.clone); default: every trial through the Objective",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the databases")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or top up) and measure nothing"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="where the databases live")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="file to write")
    args = parser.parse_args()
    if args.storage == "postgresql" and not args.postgres_url:
        parser.error("--storage postgresql needs --postgres-url or AUTOCOMPRESS_TEST_POSTGRES_URL")
    quiet()
    for size in args.sizes:
        if size < REAL_TRIALS + args.measured:
            parser.error(f"--sizes: {size} is less than {REAL_TRIALS + args.measured}")
        database = Database(args.root, args.storage, args.front, size, args.postgres_url)
        if args.fresh:
            database.remove()
        if args.build_only:
            build(database, args.measured, args.objective_trials, time_at_n=False)
            continue
        built = build(database, args.measured, args.objective_trials)
        # The fresh study's bookkeeping again, now: beside the timing at N, on the same
        # machine in the same state (the one taken at build time may have shared it).
        built["fresh_bookkeeping_at_build"] = built["fresh_bookkeeping"]
        built["fresh_bookkeeping"] = fresh_reference(database, args.measured)
        results = {**built, **measure(database, args.repeats)}
        results.update(
            storage=args.storage,
            front=args.front,
            size=size,
            measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
            commit=git_commit(),
            repeats=args.repeats,
        )
        database.results_file.write_text(json.dumps(results, indent=2))
        print(json.dumps(results), flush=True)
    lines = section_lines(collect(args.root))
    if not args.no_write:
        replace_section("scale", lines, out=args.benchmarks)
    print("\n".join(lines))
    return 0


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("autocompress").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")  # Optuna's experimental-API warnings (artifacts)


# --- one database: a folder (study file, artifacts, results) and its storage -------------


class Database:
    """The study of `size` trials for (`storage`, `front`): its folder and URL."""

    def __init__(
        self, root: Path, storage: str, front: str, size: int, postgres_url: str | None
    ) -> None:
        self.name = f"{storage}-{front}-{size}"
        self.folder = root / self.name
        self.storage, self.front, self.size = storage, front, size
        self.postgres_url = postgres_url
        self.schema = f"scale_{front}_{size}"
        self.study_file = self.folder / "study.yaml"
        self.state_file = self.folder / "state.json"
        self.results_file = self.folder / "results.json"

    @property
    def url(self) -> str:
        if self.storage == "sqlite":
            return f"sqlite:///{self.folder / 'study.db'}"
        from sqlalchemy.engine import make_url

        assert self.postgres_url is not None
        options = {"options": f"-csearch_path={self.schema}"}
        return make_url(self.postgres_url).update_query_dict(options).render_as_string(False)

    def _admin(self, statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.postgres_url)
        try:
            with engine.begin() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.storage == "postgresql":
            self._admin(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.storage == "postgresql":
            self._admin(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


# --- building -----------------------------------------------------------------------------


def build(
    database: Database, measured: int, objective_trials: int | None, time_at_n: bool = True
) -> dict[str, Any]:
    """The real tiny study (once), synthetic trials up to `size - measured` (through
    the Objective up to `objective_trials`, copies of those after), then `measured`
    more through the Objective, each timed: the per-trial bookkeeping at N."""
    from autocompress.api import run_study
    from autocompress.search import WarmStart
    from autocompress.store.trials import count_trials

    if str(REPO) not in sys.path:  # the tests' tiny study, from a plain `python benchmarks/...`
        sys.path.insert(0, str(REPO))
    from tests.conftest import tiny_study_dict, write_study

    state = database.state()
    if "real_trials" not in state:  # nothing, or a real study that did not finish
        database.remove()
        database.create()
        folder = database.folder
        definition = tiny_study_dict(
            folder, n_trials=REAL_TRIALS, study_name=STUDY_NAME, storage=database.url
        )
        write_study(folder, definition)
        started = time.perf_counter()
        result = run_study(
            database.study_file, progress=False, warm_starts=[WarmStart(TEMPLATE_PARAMS)]
        )
        state = {
            "real_study_s": time.perf_counter() - started,
            # Every trial from here on is synthetic (and complete).
            "real_trials": count_trials(result.study),
        }
        database.save_state(state)
    builder = Builder(database, state["real_trials"])
    try:
        if "fresh_bookkeeping" not in state:  # the same measure on the fresh study
            state["fresh_bookkeeping"] = builder.timed_trials(measured)
            database.save_state(state)
        through_objective = min(database.size, objective_trials or database.size)
        missing = through_objective - measured - builder.n_trials()
        if missing > 0:
            before, started, cpu = builder.n_trials(), time.perf_counter(), time.process_time()
            try:
                builder.add(missing, progress=f"{database.name}: building")
            finally:  # interrupted: the next run tops the study up from where it is
                state["build_s"] = state.get("build_s", 0.0) + time.perf_counter() - started
                # This process's CPU (SQLite: all of the work; the wall time waits for
                # whatever else runs on the machine).
                state["build_cpu_s"] = state.get("build_cpu_s", 0.0) + time.process_time() - cpu
                state["built_trials"] = state.get("built_trials", 0) + builder.n_trials() - before
                database.save_state(state)
        missing = database.size - measured - builder.n_trials()
        if missing > 0:
            started = time.perf_counter()
            builder.clone(missing, progress=f"{database.name}: copying")
            state["clone_s"] = state.get("clone_s", 0.0) + time.perf_counter() - started
            state["cloned_trials"] = state.get("cloned_trials", 0) + missing
            database.save_state(state)
        at_n = builder.timed_trials(measured) if time_at_n else None
    finally:
        builder.close()
    return {
        "real_study_s": state["real_study_s"],
        "real_trials": state["real_trials"],
        "build_s": state.get("build_s"),
        "build_cpu_s": state.get("build_cpu_s"),
        "built_trials": state.get("built_trials", 0),
        "cloned_trials": state.get("cloned_trials", 0),
        "clone_s": state.get("clone_s"),
        "fresh_bookkeeping": state["fresh_bookkeeping"],
        "bookkeeping": at_n,
    }


def fresh_reference(database: Database, measured: int) -> dict[str, Any]:
    """The per-trial bookkeeping of a fresh study (the real tiny study, then `measured`
    timed trials) on the same storage kind, built now in a throwaway folder (and
    PostgreSQL schema) and removed after."""
    with tempfile.TemporaryDirectory(prefix="autocompress-scale-fresh-") as root:
        fresh = Database(
            Path(root),
            database.storage,
            database.front,
            REAL_TRIALS + measured,
            database.postgres_url,
        )
        fresh.schema = f"{database.schema}_fresh"
        try:
            return build(fresh, measured, None, time_at_n=False)["fresh_bookkeeping"]
        finally:
            fresh.remove()


class SyntheticSampler(optuna.samplers.BaseSampler):
    """The template's params, with its unstepped floats (the distillation temperature
    and weight) moved along a low-discrepancy sequence: no two trials share params."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        value = self.params.get(param_name)
        distribution = param_distribution
        if isinstance(distribution, FloatDistribution) and distribution.step is None:
            salt = len(param_name)  # a different sequence per float
            share = ((trial.number + 1) * GOLDEN * salt) % 1.0
            return distribution.low + (distribution.high - distribution.low) * share
        if value is None:  # a field the template did not use
            choices = getattr(distribution, "choices", None)
            return choices[0] if choices else getattr(distribution, "low", None)
        return value


class Builder:
    """Adds synthetic trials through the product's `Objective` and `FrontSnapshots`."""

    def __init__(self, database: Database, real_trials: int) -> None:
        from autocompress.api import artifact_store, compare_with_teacher
        from autocompress.config import load_study_config
        from autocompress.recipe import Recipe
        from autocompress.search import FrontSnapshots, Objective
        from autocompress.store import Store, optuna_storage
        from autocompress.targets import build_target
        from autocompress.tasks import build_task

        loaded = load_study_config(database.study_file)
        config = loaded.config
        real = optuna.load_study(study_name=STUDY_NAME, storage=optuna_storage(config.storage_url))
        template = next(
            t
            for t in real.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.params == TEMPLATE_PARAMS
        )
        self.study = optuna.load_study(
            study_name=STUDY_NAME,
            storage=optuna_storage(config.storage_url),
            sampler=SyntheticSampler(template.params),
        )
        task = build_task(config)
        target = build_target(config)
        teacher = task.teacher(config.artifacts_path / "teachers")
        comparison = compare_with_teacher(self.study, config, task, teacher, target)
        self.objective = Objective(
            loaded, task, teacher, target, comparison, artifact_store(loaded)
        )
        # One real student, trained and judged again: what every synthetic trial copies.
        self.files = Path(tempfile.mkdtemp(prefix="autocompress-scale-"))
        evaluation, judgement = self.objective.train_and_judge(
            Recipe.from_dict(template.user_attrs["recipe"]), self.files, seed=task.seed
        )
        self.values = SyntheticValues(
            real, real_trials, template, evaluation, judgement, comparison, database.front
        )
        self.curve = list(template.user_attrs.get("valid_score_by_epoch", []))
        self.objective.train_and_judge = self.train_and_judge  # type: ignore[method-assign]
        self.database = database
        self.store = Store(config.storage_url)
        self.snapshots = FrontSnapshots(self.store)
        self.timing: dict[str, float] = {}

    def n_trials(self) -> int:
        from autocompress.store.trials import count_trials

        return count_trials(self.study)

    def train_and_judge(
        self, recipe: Any, folder: Path, seed: int, on_epoch: Any = None, **_: Any
    ) -> tuple[Any, Any]:
        """What training would have produced: the real student's files, its curve
        reported epoch by epoch, its evaluation and judgement with this trial's values."""
        started = time.perf_counter()
        evaluation, judgement = self.values.next(recipe)
        for name in evaluation.files:
            shutil.copy(self.files / name, folder / name)
        copied = time.perf_counter()
        for epoch, score in enumerate(self.curve, start=1):
            if on_epoch is not None:
                on_epoch(epoch, score)
        self.timing["training_stub_s"] = copied - started
        self.timing["judged_at"] = time.perf_counter()
        return evaluation, judgement

    def _snapshot(self, study: optuna.Study, trial: FrozenTrial) -> None:
        started = time.perf_counter()
        self.snapshots(study, trial)
        self.timing["snapshot_s"] = time.perf_counter() - started

    def add(self, count: int, progress: str | None = None) -> None:
        bar = tqdm(total=count, desc=progress, unit="trial", disable=progress is None)

        def tick(study: optuna.Study, trial: FrozenTrial) -> None:
            if trial.state != TrialState.COMPLETE:
                raise RuntimeError(f"trial {trial.number} ended {trial.state.name}")
            bar.update()

        try:
            self.study.optimize(self.objective, n_trials=count, callbacks=[self._snapshot, tick])
        finally:
            bar.close()

    def clone(self, count: int, progress: str) -> None:
        """Adds `count` copies of the synthetic trials built so far, cycled in number
        order (so the shares on the front, infeasible and dominated stay as built), in
        SQL: each copied trial's rows in Optuna's tables (params, values, user and system
        attributes, intermediate values, heartbeat) under a new trial id and number, one
        INSERT ... SELECT per table and block. So copies carry every attribute, artifact
        reference and constraint of their trial, and none of the bookkeeping: no
        per-trial front snapshot, no dashboard note (those of front members included).
        The front is recorded once after them, computed from every trial, as after a
        missed completion. (Optuna's `add_trials` does the same row by row, at about
        10 trials a second here: 80 minutes for 50k.)"""
        from optuna.storages._rdb import models
        from sqlalchemy import create_engine, func, literal, select

        from autocompress.search import record_front
        from autocompress.store.trials import count_trials

        trials = models.TrialModel.__table__
        children = [
            m.__table__
            for m in (
                models.TrialParamModel,
                models.TrialValueModel,
                models.TrialUserAttributeModel,
                models.TrialSystemAttributeModel,
                models.TrialIntermediateValueModel,
                models.TrialHeartbeatModel,
            )
        ]
        study_id = self.study._study_id
        first = self.values.real_trials  # the synthetic trials: numbers first..last
        last = count_trials(self.study) - 1
        engine = create_engine(self.database.url)
        bar = tqdm(total=count, desc=progress, unit="trial")
        try:
            done = 0
            while done < count:
                block = min(count - done, last - first + 1)
                with engine.begin() as connection:
                    next_id = connection.scalar(select(func.max(trials.c.trial_id))) + 1
                    next_number = connection.scalar(
                        select(func.max(trials.c.number)).where(trials.c.study_id == study_id)
                    )
                    source = (trials.c.study_id == study_id) & trials.c.number.between(
                        first, first + block - 1
                    )
                    first_id = connection.scalar(select(func.min(trials.c.trial_id)).where(source))
                    id_shift, number_shift = next_id - first_id, next_number + 1 - first
                    columns = [c.name for c in trials.columns]
                    shifted = {
                        "trial_id": trials.c.trial_id + literal(id_shift),
                        "number": trials.c.number + literal(number_shift),
                    }
                    connection.execute(
                        trials.insert().from_select(
                            columns,
                            select(*(shifted.get(c, trials.c[c]) for c in columns)).where(source),
                        )
                    )
                    for table in children:
                        kept = [c.name for c in table.columns if not c.primary_key]
                        picked = [
                            table.c.trial_id + literal(id_shift) if c == "trial_id" else table.c[c]
                            for c in kept
                        ]
                        connection.execute(
                            table.insert().from_select(
                                kept,
                                select(*picked)
                                .join(trials, trials.c.trial_id == table.c.trial_id)
                                .where(source),
                            )
                        )
                    if engine.dialect.name == "postgresql":  # ids given: move the sequence on
                        connection.exec_driver_sql(
                            "SELECT setval(pg_get_serial_sequence('trials', 'trial_id'), "
                            "(SELECT max(trial_id) FROM trials))"
                        )
                done += block
                bar.update(block)
        finally:
            bar.close()
            engine.dispose()
        self.values.skip(count)
        known = self.snapshots.known
        end = count_trials(self.study) - 1
        record_front(self.store, self.study, end, from_every_trial=True, known=known)

    def timed_trials(self, count: int) -> dict[str, Any]:
        """Adds `count` trials one at a time; the median of each part, in ms."""
        parts: dict[str, list[float]] = {}
        at = self.n_trials()
        for _ in range(count):
            started = time.perf_counter()
            self.add(1)
            ended = time.perf_counter()
            t = self.timing
            after = ended - t["judged_at"]  # attributes, artifacts, note, tell, snapshot
            for name, seconds in {
                "trial_ms": ended - started - t["training_stub_s"],
                "bookkeeping_ms": after,
                "snapshot_ms": t["snapshot_s"],
            }.items():
                parts.setdefault(name, []).append(1000 * seconds)
        return {"at_trials": at, **{k: statistics.median(v) for k, v in parts.items()}}

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.files, ignore_errors=True)


class SyntheticValues:
    """The scores and latency of synthetic trial k: on the front (more accurate and
    slower than every real trial, each more than the one before), infeasible (over the
    accuracy limit, faster), or dominated by the real student it copies."""

    def __init__(
        self,
        real: optuna.Study,
        real_trials: int,
        template: FrozenTrial,
        evaluation: Any,
        judgement: Any,
        comparison: Any,
        front: str,
    ) -> None:
        from autocompress.changes import SEARCH_SPLIT
        from autocompress.store.trials import count_trials

        complete = real.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self.evaluation, self.judgement = evaluation, judgement
        self.teacher = comparison.teacher_metrics[SEARCH_SPLIT]
        self.best = {
            m: max(t.user_attrs["metrics"][m] for t in complete) for m in ("accuracy", "f1")
        }
        self.slowest = max(t.user_attrs["measurement"]["latency_p50_ms"] for t in complete)
        self.fastest = min(t.user_attrs["measurement"]["latency_p50_ms"] for t in complete)
        self.template = {
            "accuracy": template.user_attrs["metrics"]["accuracy"],
            "f1": template.user_attrs["metrics"]["f1"],
            "latency": template.user_attrs["measurement"]["latency_p50_ms"],
        }
        self.share = FRONT_SHARES[front]
        self.real_trials = real_trials
        # Resumed: the synthetic trials already there, and how many of them are on the front.
        self.k = count_trials(real) - real_trials
        self.on_front = math.floor(self.k * self.share)

    def skip(self, count: int) -> None:
        """`count` trials were added as copies: number the next ones after them."""
        self.k += count
        self.on_front = math.floor(self.k * self.share)

    def next(self, recipe: Any) -> tuple[Any, Any]:
        k = self.k
        self.k += 1
        spread = ((k + 1) * GOLDEN) % 1.0
        if math.floor((k + 1) * self.share) > math.floor(k * self.share):  # on the front
            j = self.on_front = self.on_front + 1
            rise = j / (j + 1)  # increasing, below 1: any number of members
            accuracy = self.best["accuracy"] + (1 - self.best["accuracy"]) * rise
            f1 = self.best["f1"] + (1 - self.best["f1"]) * rise
            latency = self.slowest * (1.1 + 0.001 * j)
        elif spread < INFEASIBLE_SHARE:  # over the limit, faster than every real trial
            accuracy = self.teacher["accuracy"] - 0.06 - 0.1 * spread
            f1 = self.teacher["f1"] - 0.06 - 0.1 * spread
            latency = self.fastest * (0.5 + spread)
        else:  # within the limits, dominated by the template
            accuracy = self.template["accuracy"] - 0.001 - 0.03 * spread
            f1 = self.template["f1"] - 0.001 - 0.03 * spread
            latency = self.template["latency"] * (1.01 + spread)
        return self._evaluation(latency), self._judgement(accuracy, f1)

    def _evaluation(self, latency: float) -> Any:
        m = self.evaluation.measurement
        ratio = latency / m.latency_p50_ms
        measurement = dataclasses.replace(
            m,
            latency_p50_ms=latency,
            latency_p90_ms=m.latency_p90_ms * ratio,
            latency_mean_ms=m.latency_mean_ms * ratio,
        )
        return dataclasses.replace(self.evaluation, measurement=measurement)

    def _judgement(self, accuracy: float, f1: float) -> Any:
        j = self.judgement
        metrics = {**j.metrics, "accuracy": accuracy, "f1": f1}
        changes = {
            **j.changes,
            "accuracy_drop": self.teacher["accuracy"] - accuracy,
            "f1_drop": self.teacher["f1"] - f1,
        }
        # A constraint is a change less its limit: it moves with the change.
        constraints = {
            name: value + changes[name] - j.changes[name] if name in changes else value
            for name, value in j.constraints.items()
        }
        return dataclasses.replace(j, metrics=metrics, changes=changes, constraints=constraints)


# --- measuring ----------------------------------------------------------------------------


def measure(database: Database, repeats: int) -> dict[str, Any]:
    from autocompress.store.trials import count_trials

    url = database.url
    study = load(url)
    results: dict[str, Any] = {
        "trials": count_trials(study),
        "complete": count_trials(study, (TrialState.COMPLETE,)),
    }
    results.update(front_in_process(database, repeats))
    results.update(cli_reads(database, repeats))
    results.update(dashboard(database, repeats))
    results.update(dashboard(database, repeats, only_front=True))
    results.update(database_size(database))
    return results


def load(url: str) -> optuna.Study:
    from autocompress.store import optuna_storage

    return optuna.load_study(study_name=STUDY_NAME, storage=optuna_storage(url))


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def front_in_process(database: Database, repeats: int) -> dict[str, Any]:
    """The front computed in-process from every complete trial (`front_of`, the trials
    already in memory: what a recomputation costs), Optuna's read of those trials on a
    newly loaded study (apart: no command makes it), and the snapshot read `autocompress
    front` makes."""
    from autocompress.api import stored_front
    from autocompress.front import front_of

    loaded, computed, stored = [], [], []
    members = 0
    for _ in range(repeats):
        started = time.perf_counter()
        study = load(database.url)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        loaded.append(time.perf_counter() - started)
        started = time.perf_counter()
        members = len(front_of(complete, study))
        computed.append(time.perf_counter() - started)
        del study, complete
        started = time.perf_counter()
        stored_front(database.study_file)
        stored.append(time.perf_counter() - started)
    return {
        "front_members": members,
        "load_s": summary(loaded),
        "compute_s": summary(computed),
        "stored_s": summary(stored),
    }


def cli_reads(database: Database, repeats: int) -> dict[str, Any]:
    """Cold `autocompress front --json` and `autocompress export` (policy fastest)."""
    python = [sys.executable, "-m", "autocompress"]
    study = str(database.study_file)
    front_s, front_mb, export_s = [], [], []
    with tempfile.TemporaryDirectory(prefix="autocompress-scale-export-") as out:
        for index in range(repeats):
            seconds, rss = timed_child([*python, "front", study, "--json"], database.folder)
            front_s.append(seconds)
            front_mb.append(rss)
            target = str(Path(out) / f"export-{index}")
            command = [*python, "export", study, "--out", target, "--policy", "fastest"]
            export_s.append(timed_child(command, database.folder)[0])
        exported = yaml.safe_load((Path(out) / "export-0" / "config.yaml").read_text())
    return {
        "exported_trial": exported["study"]["trial_number"],
        "front_cli_s": summary(front_s),
        "front_rss_mb": summary(front_mb) if None not in front_mb else None,
        "export_cli_s": summary(export_s),
    }


def timed_child(command: list[str], cwd: Path) -> tuple[float, float | None]:
    """Wall seconds and peak memory (MB) of a child process. The peak is GNU time's max
    RSS: the child's own rusage here would count this process's memory (a child's
    maximum RSS starts from what it inherited at the fork), so a small `time` process
    starts it instead. None without /usr/bin/time."""
    with tempfile.NamedTemporaryFile(prefix="autocompress-scale-rss-") as rss:
        wrapper = [TIME, "-o", rss.name, "-f", "%M"] if Path(TIME).exists() else []
        started = time.perf_counter()
        done = subprocess.run([*wrapper, *command], cwd=cwd, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
            )
        peak_kb = Path(rss.name).read_text().split()[-1:] if wrapper else []
    return seconds, int(peak_kb[0]) / 1024 if peak_kb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, timeout: float = 600) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def dashboard(database: Database, repeats: int, only_front: bool = False) -> dict[str, Any]:
    """`autocompress dashboard` on the study: the time to serve the study page's trial
    list (`/api/studies/<id>?after=0`, every trial), first and again, and its size.
    With `only_front`, `autocompress dashboard --only-front` (the front and the
    teacher): `dashboard_front_*` keys."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "autocompress", "dashboard", str(database.study_file)]
    if only_front:
        command.append("--only-front")
    process = subprocess.Popen(
        [*command, "--port", str(port), "--host", "127.0.0.1"],
        cwd=database.folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.perf_counter()
        while True:
            try:
                fetch(f"{base}/api/meta", timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > 120:
                    process.kill()
                    error = process.communicate()[1]
                    raise SystemExit(f"the dashboard did not start:\n{error}") from None
                time.sleep(0.2)
        up_s = time.perf_counter() - started
        studies = json.loads(fetch(f"{base}/api/studies"))["study_summaries"]
        (study_id,) = [s["study_id"] for s in studies if s["study_name"] == STUDY_NAME]
        times, page = [], b""
        for _ in range(repeats):
            started = time.perf_counter()
            page = fetch(f"{base}/api/studies/{study_id}?after=0")
            times.append(time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)
    if only_front:
        return {
            "dashboard_front_first_s": times[0],
            "dashboard_front_again_s": summary(times[1:] or times),
            "dashboard_front_mb": len(page) / 1e6,
            "dashboard_front_trials": len(json.loads(page)["trials"]),
        }
    return {
        "dashboard_up_s": up_s,
        "dashboard_first_s": times[0],
        "dashboard_again_s": summary(times[1:] or times),
        "dashboard_mb": len(page) / 1e6,
        # The trials whose note the page shows: the teacher and those on the front when
        # they completed (every trial's note is its note.md artifact).
        "dashboard_notes": sum(
            bool((t.get("note") or {}).get("body")) for t in json.loads(page)["trials"]
        ),
    }


def snapshot_tables() -> list[str]:
    """Our tables that hold front snapshots (named `*front*` in our schema)."""
    from autocompress.store.schema import Base

    return sorted(name for name in Base.metadata.tables if "front" in name)


def database_size(database: Database) -> dict[str, Any]:
    """Bytes of the whole database (SQLite: the file and its WAL; PostgreSQL: every
    table of the schema, indexes and TOAST included), and of the snapshot tables."""
    tables = snapshot_tables()
    if database.storage == "sqlite":
        path = database.folder / "study.db"
        total = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        with sqlite3.connect(path) as connection:
            owner = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master"))
            by_table: dict[str, int] = {}
            for name, size in connection.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
            ):
                by_table[owner.get(name, name)] = by_table.get(owner.get(name, name), 0) + size
            rows = {
                t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
            }
        snapshots = sum(by_table.get(t, 0) for t in tables)
    else:
        from sqlalchemy import create_engine, text

        engine = create_engine(database.url)
        try:
            with engine.connect() as connection:
                sizes = dict(
                    connection.execute(
                        text(
                            "SELECT tablename, pg_total_relation_size("
                            "quote_ident(schemaname) || '.' || quote_ident(tablename)) "
                            "FROM pg_tables WHERE schemaname = :schema"
                        ),
                        {"schema": database.schema},
                    ).all()
                )
                rows = {
                    t: connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
                    for t in tables
                }
        finally:
            engine.dispose()
        total = sum(sizes.values())
        snapshots = sum(sizes.get(t, 0) for t in tables)
    return {"database_mb": total / 1e6, "snapshot_mb": snapshots / 1e6, "snapshot_rows": rows}


# --- the table ----------------------------------------------------------------------------


def collect(root: Path) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(root.glob("*/results.json"))]
    return sorted(found, key=lambda r: (r["storage"], r["front"], r["size"]))


def with_range(figure: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    return (
        f"{figure['median'] * scale:.{digits}f} "
        f"({figure['min'] * scale:.{digits}f}–{figure['max'] * scale:.{digits}f})"
    )


def timed(figure: dict[str, float], target: str, applies: bool) -> str:
    return with_range(figure) + mark(figure["median"], TARGETS[target], applies)


def peak_mb(figure: dict[str, float] | None, applies: bool) -> str:
    if figure is None:
        return "—"
    return f"{figure['median']:.0f}{mark(figure['median'], TARGETS['front_rss_mb'], applies)}"


def mark(value: float, limit: float, applies: bool) -> str:
    if not applies:
        return ""
    return " ✓" if value < limit else " ✗"


def section_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Scale: large studies (1k, 10k, 50k trials)",
        "",
        "Produced by `python benchmarks/scale.py [--storage sqlite|postgresql] "
        "[--front small|large]` (its docstring says how the studies are built): the tiny "
        "German credit study run for real, then synthetic complete trials added through "
        "the product's own `Objective` and `FrontSnapshots` with the training replaced by "
        "a real student's result, scores and latency set per trial. Front `small`: "
        f"{FRONT_SHARES['small']:.0%} of the synthetic trials on the front, `large`: "
        f"{FRONT_SHARES['large']:.0%}.",
        "",
        machine_line(),
        versions_line("optuna", "optuna-dashboard", "sqlalchemy", "psycopg"),
        "",
        "Times in seconds: median of the repeats, (min–max). Targets (issue 16) marked ✓/✗ "
        "where they apply: at 10k `front --json` and `export` < 2 s as whole processes, "
        "front computation < 0.5 s, bookkeeping within 2× a fresh study's, dashboard page "
        "< 10 s (marked on both pages: the issue accepts `--only-front` as the way through "
        "where optuna-dashboard itself is the limit); at 50k peak memory of `front` "
        "< 500 MB.",
        "",
        "| storage | front | trials | front members | `front --json` s | `front` peak MB "
        "| `export` s | front computed s | every trial loaded s | snapshot read s "
        "| bookkeeping ms at N (fresh; ×) "
        "| snapshot ms at N | dashboard page s (again) | page MB | `--only-front` page s "
        "(MB) | DB MB | snapshot tables MB (rows) | build s (CPU s) | measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        at_10k, at_50k = r["size"] == 10000, r["size"] == 50000
        fresh = r["fresh_bookkeeping"]["bookkeeping_ms"]
        now = r["bookkeeping"]["bookkeeping_ms"]
        ratio = now / fresh
        rows = sum(r["snapshot_rows"].values())
        loaded = with_range(r["load_s"]) if "load_s" in r else "—"
        build = "—" if r.get("build_s") is None else f"{r['build_s']:.0f}"
        if r.get("build_cpu_s") is not None:
            build += f" ({r['build_cpu_s']:.0f} CPU)"
        if r.get("cloned_trials"):
            build += f"; {r['cloned_trials']:,} copied in {r['clone_s']:.0f} s"
        lines.append(
            f"| {r['storage']} | {r['front']} | {r['trials']:,} | {r['front_members']:,} "
            f"| {timed(r['front_cli_s'], 'front_s', at_10k)} "
            f"| {peak_mb(r['front_rss_mb'], at_50k)} "
            f"| {timed(r['export_cli_s'], 'export_s', at_10k)} "
            f"| {timed(r['compute_s'], 'compute_s', at_10k)} | {loaded} "
            f"| {with_range(r['stored_s'])} "
            f"| {now:.1f} ({fresh:.1f}; {ratio:.1f}×)"
            f"{mark(ratio, TARGETS['bookkeeping_ratio'], at_10k)} "
            f"| {r['bookkeeping']['snapshot_ms']:.1f} "
            f"| {r['dashboard_first_s']:.2f}"
            f"{mark(r['dashboard_first_s'], TARGETS['dashboard_s'], at_10k)} "
            f"({r['dashboard_again_s']['median']:.2f}) | {r['dashboard_mb']:.1f} "
            f"| {front_page(r, at_10k)} | {r['database_mb']:.1f} "
            f"| {r['snapshot_mb']:.1f} ({rows:,}) | {build} "
            f"| {r['measured_at']} {r['commit']} |"
        )
    lines += [
        "",
        "What each column measures: `front --json` and `export` are cold whole processes "
        "(`python -m autocompress ...`, wall time, imports included); export uses policy "
        "`fastest`, which picks a real trial, and the tiny study's `export.seeds: 1`, so it "
        "trains nothing: it reads the front and the trial and writes the export folder. "
        "`front` peak MB is the max RSS of that process (GNU time). Front computed: "
        "`front_of` on every complete trial, already in memory (what a recomputation costs: "
        "the non-dominated sort and the members' rows); every trial loaded: Optuna's read of "
        "the complete trials of a newly loaded study, which no command makes; snapshot read: "
        "`stored_front`, what `autocompress front` does. Bookkeeping: the median over the "
        "added trials of the time from the (replaced) training's return to the end of the "
        "trial: user attributes, constraints, model and report artifacts, the note, Optuna's "
        "tell and the front snapshot; fresh: the same on a new study of a few trials "
        "(the real tiny one) built in the same run just before. Dashboard page: the first "
        "GET of "
        "`/api/studies/<id>?after=0` (every trial, what the study page loads) on a newly "
        "started `autocompress dashboard`, then the median of the others; `--only-front`: "
        "the first GET on `autocompress dashboard --only-front` (the front and the teacher "
        "only) and its size. DB MB: SQLite file (and WAL), or every table of the PostgreSQL "
        "schema with indexes and TOAST. Build s: adding the synthetic trials, one by one as "
        "a search would (wall time, and this process's CPU time: on SQLite all of the "
        "work). Copied: trials added as copies of the built ones (`--objective-trials`, see "
        "`Builder.clone`): the same attributes, no per-trial snapshot or dashboard note.",
        "",
    ]
    return lines


def front_page(r: dict[str, Any], applies: bool) -> str:
    """`0.07 ✓ (0.22)`: the `--only-front` study page's first GET, against the page
    target where it applies, and MB (`—` for results measured before it existed)."""
    if r.get("dashboard_front_first_s") is None:
        return "—"
    seconds = r["dashboard_front_first_s"]
    return (
        f"{seconds:.2f}{mark(seconds, TARGETS['dashboard_s'], applies)} "
        f"({r['dashboard_front_mb']:.2f})"
    )


if __name__ == "__main__":
    sys.exit(main())
