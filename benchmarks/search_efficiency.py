"""Does the search find better trade-offs with less compute than what a user would try?

Credit (Taiwan, 30,000 rows, read from `../shared/data`; skipped when absent): the
shipped Taiwan study is run, on this machine and in this one process, by

- `tpe`: the default sampler (multivariate TPE) alone, 30 student trials;
- `random`: Optuna's `RandomSampler`, 90 student trials;
- `grid`: the usual hand recipes, queued in a fixed order (int8 only; prune 30/50/70%
  with 10 epochs of fine-tuning, then int8; distillation only: prune 50% and distil 20
  epochs, fp32). Nothing is sampled;
- extra arms named with `--arms`: `tpe-halving` (the default sampler with
  `cost_control.successive_halving`) and `tpe-skip` (with
  `cost_control.skip_slower_than_fastest`), `tpe-warm` (the hand recipes queued first,
  then the default sampler: the study as shipped), 30 student trials each,

each with seeds 0, 1, 2 (the sampler's seed; the grid has none, so its three runs
differ in wall time only). Every run has its own database; all share one artifacts
folder, so the study's teachers (one per searched input transform) are trained once,
before any run is timed.

The score of a run after k student trials is the **hypervolume of its feasible front**
(feasible: within every limit of the study, on the validation split, as the search
judges it), objectives normalised against the teacher of the same run:

    auc_gain    = (AUC − (teacher AUC − max_roc_auc_drop)) / max_roc_auc_drop
    speed_gain  = 1 − latency_p50 / teacher latency_p50

reference point (0, 0): a student counts by how far it is inside the AUC limit and how
much of the teacher's latency it saves. On the validation split this is the front the
search sees; on the held-out test split the same trials (feasible on validation) are
scored with their test AUC against the teacher's test AUC. Wall time is the sum of the
student trials' durations (the teachers and baselines, shared by all runs, excluded).

Writes the `search_efficiency` section of BENCHMARKS.md and
`benchmarks/search_efficiency_credit.png`. Per-run trial records are kept in
`runs/benchmarks/search_efficiency/` and reused by a rerun (`--fresh` runs again).

Text (Twitter Financial News, MiniLM; skipped when the data is absent): for one fixed
wall-time budget, two arms, each a study of its own (run both at once, one per core):

- `search`: the shipped `fin_sentiment_minilm` study with **no warm start**, as the
  sampler and the cost-control rules of the study file run it;
- `hand`: the recipes a user would queue by hand, in order (dynamic int8 of the
  teacher; then the study file's hand recipes), each trained to its end (no stopping
  rule), until the budget runs out.

Then, in one process (`--measure`), each arm's selection (the fastest student within
the 1.0-point macro-F1 limit on the validation split, among the trials that ended
within the budget) is timed beside the FP32 teacher and its dynamic int8 in
interleaved rounds at 1 thread (the `text_latency.py` harness), with the validation
and held-out test F1 changes and their paired intervals, and the minute at which the
arm first reached it. Writes the `search_efficiency_text` section.

    python benchmarks/search_efficiency.py credit [--seeds 0 1 2] [--arms tpe random grid]
    python benchmarks/search_efficiency.py text --arm both --budget-min 120
    (or: --arm search and --arm hand in two processes, then --measure)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import yaml
from _report import REPO, machine_line, replace_section, versions_line
from optuna._hypervolume import compute_hypervolume  # noqa: PLC2701 (no public 2-D helper)
from optuna.artifacts import download_artifact
from optuna.trial import TrialState

from autocompress import run_study
from autocompress.artifacts import AtomicArtifactStore
from autocompress.config import load_study_config
from autocompress.dashboard import named_constraints
from autocompress.front import TEACHER_ROLE
from autocompress.recipe import Recipe
from autocompress.targets import OnnxRuntimeTarget
from autocompress.targets.measurement import interleaved_rounds
from autocompress.tasks import build_task

logger = logging.getLogger("autocompress")
STUDY = REPO / "studies" / "taiwan_credit.yaml"
TEXT_STUDY = REPO / "studies" / "fin_sentiment_minilm.yaml"
RECORDS = REPO / "runs" / "benchmarks" / "search_efficiency"
PLOT = REPO / "benchmarks" / "search_efficiency_credit.png"
STUDENT_TRIALS = {"tpe": 30, "random": 90, "tpe-halving": 30, "tpe-skip": 30, "tpe-warm": 30}
# Arms that turn on a cost-control rule on top of the default sampler.
RULES = {
    "tpe-halving": {"successive_halving": True},
    "tpe-skip": {"skip_slower_than_fastest": True},
}
CHECKPOINTS = (5, 10, 20, 30, 60, 90)

# The usual hand recipes: the shipped study's own warm starts (its file says which).
HAND_RECIPES: list[dict[str, Any]] = yaml.safe_load(STUDY.read_text())["warm_start"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["credit", "text"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["tpe", "random", "grid"])
    parser.add_argument("--fresh", action="store_true", help="run again even when recorded")
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="credit: time every feasible student again, all in this process (interleaved)",
    )
    parser.add_argument(
        "--arm", choices=["search", "hand", "both"], help="text: the arm to run (both: at once)"
    )
    parser.add_argument("--budget-min", type=float, default=120.0, help="text: wall time")
    parser.add_argument("--measure", action="store_true", help="text: time both selections")
    parser.add_argument("--rounds", type=int, default=7, help="text: interleaved rounds")
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=REPO / "runs" / "artifacts",
        help="text: where the teacher is cached (shared with the shipped study)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    if args.part == "text":
        from search_efficiency_text import run_text  # benchmarks/: the text arms

        return run_text(args)
    loaded = load_study_config(STUDY)
    data = Path(loaded.config.task.data.path)
    if not data.exists():
        print(f"credit: {data} is absent; skipped", file=sys.stderr)
        return 0
    RECORDS.mkdir(parents=True, exist_ok=True)
    artifacts = RECORDS / "artifacts"
    prepare_teachers(artifacts)
    runs: dict[str, list[dict]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            runs.setdefault(arm, []).append(run_arm(arm, seed, artifacts, args.fresh))
    if args.remeasure:
        remeasure(runs, artifacts)
    lines = credit_section(runs, loaded.config.constraints.max_roc_auc_drop)
    plot(runs)
    replace_section("search_efficiency", lines)
    print("\n".join(lines))
    return 0


def prepare_teachers(artifacts: Path) -> None:
    """Train (or load) the study's teacher and one per searched input transform, so no
    timed run pays for them."""
    config = load_study_config(STUDY).config
    task = build_task(config)
    space = yaml.safe_load((STUDY.parent / config.search_space).read_text())
    for transform in space["numeric_transform"]["choices"]:
        started = time.monotonic()
        task.for_recipe(Recipe(numeric_transform=transform)).teacher(artifacts / "teachers")
        logger.info("teacher for %s inputs ready (%.0f s)", transform, time.monotonic() - started)


def study_file(arm: str, seed: int, artifacts: Path, folder: Path) -> Path:
    """The shipped Taiwan study with this arm's sampler (or queued recipes) and seed."""
    raw = yaml.safe_load(STUDY.read_text())
    raw["study_name"] = f"efficiency-{arm}-{seed}"
    raw["search_space"] = str((STUDY.parent / raw["search_space"]).resolve())
    raw["task"]["data"]["path"] = str((STUDY.parent / raw["task"]["data"]["path"]).resolve())
    raw["artifacts_dir"] = str(artifacts)
    raw.pop("warm_start", None)  # the shipped study's are the hand recipes: `tpe-warm`
    if arm == "grid":
        raw["sampler"] = {"name": "random", "seed": seed}
        raw["warm_start"] = HAND_RECIPES
        raw["n_trials"] = 1 + len(HAND_RECIPES)
    else:
        raw["sampler"] = {"name": "random" if arm == "random" else "tpe", "seed": seed}
        raw["n_trials"] = 1 + STUDENT_TRIALS[arm]
        raw["cost_control"] = RULES.get(arm, {})
        if arm == "tpe-warm":  # the hand recipes first, then the sampler: 30 in all
            raw["warm_start"] = HAND_RECIPES
    path = folder / f"{raw['study_name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_arm(arm: str, seed: int, artifacts: Path, fresh: bool) -> dict:
    record_path = RECORDS / f"credit-{arm}-{seed}.json"
    if record_path.exists() and not fresh:
        logger.info("%s seed %d: recorded in %s", arm, seed, record_path)
        return json.loads(record_path.read_text())
    folder = RECORDS / f"credit-{arm}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "study.db"
    database.unlink(missing_ok=True)  # ours: a previous, unfinished run of this benchmark
    path = study_file(arm, seed, artifacts, folder)
    logger.info("%s seed %d: running %s", arm, seed, path)
    started = time.monotonic()
    result = run_study(path, storage=f"sqlite:///{database}", progress=False)
    record = {
        "arm": arm,
        "seed": seed,
        "commit": _commit(),
        "run_seconds": time.monotonic() - started,
        "trials": trial_records(result.study),
    }
    record_path.write_text(json.dumps(record, indent=1))
    return record


def trial_records(study: optuna.Study) -> list[dict]:
    records = []
    for trial in study.get_trials(deepcopy=False):
        if trial.datetime_complete is None or trial.datetime_start is None:
            continue
        held_out = trial.user_attrs.get("held_out") or {}
        records.append(
            {
                "number": trial.number,
                "teacher": trial.user_attrs.get("role") == TEACHER_ROLE,
                "state": trial.state.name,
                "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds(),
                "params": trial.params,
                "valid_auc": (trial.user_attrs.get("metrics") or {}).get("roc_auc"),
                "test_auc": (held_out.get("metrics") or {}).get("roc_auc"),
                "latency_p50_ms": (trial.user_attrs.get("measurement") or {}).get("latency_p50_ms"),
                "feasible": trial.state == TrialState.COMPLETE
                and all(value <= 0 for value in named_constraints(trial).values()),
                "epochs": len(trial.user_attrs.get("valid_score_by_epoch", [])),
                "estimate_ratio": (trial.user_attrs.get("latency_estimate") or {}).get(
                    "trained_ratio"
                ),
                "skipped": "skipped_for_latency" in trial.user_attrs,
                "pruned_reason": trial.user_attrs.get("pruned_reason"),
            }
        )
    return records


REMEASURE_ROUNDS = 3


def remeasure(runs: dict[str, list[dict]], artifacts: Path) -> None:
    """Time the teacher and every feasible student of every run again, in this one
    process, in interleaved rounds (each round visits every model once, in a shuffled
    order), so drift on a shared machine hits all alike; stored as `remeasured_ms`."""
    config = load_study_config(STUDY).config
    task = build_task(config)
    target = OnnxRuntimeTarget(config.target)
    store = AtomicArtifactStore(artifacts / "trials")
    sessions: dict[str, Any] = {}
    owners: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="efficiency-remeasure-") as work:
        for arm, records in runs.items():
            for record in records:
                run = f"credit-{arm}-{record['seed']}"
                study = optuna.load_study(
                    study_name=f"efficiency-{arm}-{record['seed']}",
                    storage=f"sqlite:///{RECORDS / run / 'study.db'}",
                )
                by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
                for trial in record["trials"]:
                    if not (trial["feasible"] or trial["teacher"]):
                        continue
                    name = f"{run}-{trial['number']}"
                    path = Path(work) / f"{name}.onnx"
                    artifact = by_number[trial["number"]].user_attrs["artifacts"]["model.onnx"]
                    download_artifact(
                        artifact_store=store, file_path=str(path), artifact_id=artifact
                    )
                    sessions[name] = target.load(path)
                    owners[name] = trial
        feed = task.measurement_feed(config.target.batch_size)
        logger.info("re-measuring %d models, %d rounds", len(sessions), REMEASURE_ROUNDS)
        p50s = interleaved_rounds(
            lambda name: target.measure(sessions[name], feed), list(sessions), REMEASURE_ROUNDS
        )
    for name, values in p50s.items():
        owners[name]["remeasured_ms"] = statistics.median(values)
    for arm, records in runs.items():
        for record in records:
            path = RECORDS / f"credit-{arm}-{record['seed']}.json"
            path.write_text(json.dumps(record, indent=1))


def latency(trial: dict) -> float:
    """The end-of-benchmark interleaved p50 when there is one, else the run's own."""
    return trial.get("remeasured_ms") or trial["latency_p50_ms"]


def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """Area dominated by (auc_gain, speed_gain) points over the reference (0, 0)."""
    inside = np.array([p for p in points if p[0] > 0 and p[1] > 0], dtype=float)
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(-inside, np.zeros(2)))


def reference_latency(runs: dict[str, list[dict]]) -> float:
    """The teacher's p50, median over every run: one teacher measurement under load moved
    a run's own reference by 2x (3.8 to 8.2 ms), and every speed-up of that run with it."""
    return statistics.median(
        latency(t)
        for records in runs.values()
        for r in records
        for t in r["trials"]
        if t["teacher"]
    )


def curve(
    record: dict, limit: float, split: str, latency_ms: float
) -> tuple[list[float], list[float]]:
    """Hypervolume after each student trial, and the wall time (s) at which it ended;
    speed-ups against `latency_ms` (`reference_latency`)."""
    trials = sorted(record["trials"], key=lambda t: t["number"])
    teacher = next(t for t in trials if t["teacher"])
    floor = teacher[f"{split}_auc"] - limit
    points, volumes, clock, elapsed = [], [], [], 0.0
    for trial in trials:
        if trial["teacher"]:
            continue
        elapsed += trial["seconds"]
        if trial["feasible"]:
            points.append(
                (
                    (trial[f"{split}_auc"] - floor) / limit,
                    1.0 - latency(trial) / latency_ms,
                )
            )
        volumes.append(hypervolume(points))
        clock.append(elapsed)
    return volumes, clock


def at_trial(volumes: list[float], k: int) -> float | None:
    return volumes[min(k, len(volumes)) - 1] if volumes else None


def at_time(volumes: list[float], clock: list[float], seconds: float) -> float:
    reached = [v for v, t in zip(volumes, clock, strict=True) if t <= seconds]
    return reached[-1] if reached else 0.0


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def credit_section(runs: dict[str, list[dict]], limit: float) -> list[str]:
    seeds = sorted({r["seed"] for records in runs.values() for r in records})
    lines = [
        "## Search efficiency: the search against random search and hand recipes "
        "(`benchmarks/search_efficiency.py`)",
        "",
        machine_line(),
        versions_line("torch", "onnxruntime", "optuna"),
        f"- Taiwan credit (`studies/taiwan_credit.yaml` as shipped: limits AUC drop ≤ {limit}, "
        "Brier increase ≤ 0.005, judged on the validation split); seeds "
        f"{', '.join(map(str, seeds))} per arm; one process, one torch and one onnxruntime "
        "thread; the runs of an arm one after another, while the machine did other work "
        "(wall times carry that load; the latencies were re-timed together)",
        "- hypervolume of the feasible front, objectives normalised against the teacher: "
        "auc_gain = (AUC − (teacher AUC − limit)) / limit, speed_gain = 1 − latency / "
        f"teacher latency ({reference_latency(runs):.2f} ms: the median of the teacher's p50 "
        "over all runs), reference point (0, 0); `valid` is what "
        "the search sees, `test` scores the same trials (feasible on validation) on the "
        "held-out split; latencies are re-measured at the end (`--remeasure`: every "
        "feasible student and the teacher of every run, in one process, interleaved "
        "rounds) where recorded, else "
        "each trial's own measurement during its run",
        "- arms: `tpe` the default sampler alone; `random` Optuna's RandomSampler; `grid` "
        "the study file's 5 hand recipes (int8; prune 30/50/70% + 10 epochs + int8; prune "
        "50% + distil 20 epochs), nothing sampled; `tpe-warm` those 5 first, then the "
        "sampler (the study as shipped); `tpe-halving`, `tpe-skip` the sampler with "
        "`cost_control.successive_halving` / `skip_slower_than_fastest`",
        "- wall time: sum of the student trials' durations (teachers and baselines are "
        "trained once before any run and excluded); median [min–max] over the seeds",
        "",
        "| arm | student trials | split | HV @10 | HV @30 | HV @90 | wall time (s) | feasible "
        "| fine-tuning epochs | not trained (latency) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    latency_ms = reference_latency(runs)
    curves = {
        arm: {
            split: [curve(r, limit, split, latency_ms) for r in records]
            for split in ("valid", "test")
        }
        for arm, records in runs.items()
    }
    for arm, records in runs.items():
        for split in ("valid", "test"):
            volumes = [v for v, _ in curves[arm][split]]
            cells = []
            for k in (10, 30, 90):
                reached = [at_trial(v, k) for v in volumes if len(v) >= k]
                cells.append(_spread(reached) if reached else "–")
            wall = [c[-1] if c else 0.0 for _, c in curves[arm][split]]
            feasible = [
                sum(t["feasible"] for t in r["trials"] if not t["teacher"]) for r in records
            ]
            students = [sum(not t["teacher"] for t in r["trials"]) for r in records]
            epochs = [sum(t.get("epochs", 0) for t in r["trials"]) for r in records]
            skipped = [sum(bool(t.get("skipped")) for t in r["trials"]) for r in records]
            lines.append(
                f"| {arm} | {statistics.median(students):.0f} | {split} | {' | '.join(cells)} | "
                f"{statistics.median(wall):.0f} [{min(wall):.0f}–{max(wall):.0f}] | "
                f"{statistics.median(feasible):.0f} | {statistics.median(epochs):.0f} | "
                f"{statistics.median(skipped):.0f} |"
            )
    lines += ["", *equal_time_lines(curves), *estimate_lines(runs)]
    lines += ["", f"![hypervolume]({PLOT.name})", ""]
    return lines


def equal_time_lines(curves: dict) -> list[str]:
    """Each arm's hypervolume at the wall time the hand-recipe grid took (its median)."""
    if "grid" not in curves:
        return []
    budget = statistics.median(c[-1] for _, c in curves["grid"]["valid"] if c)
    lines = [f"At the grid's median wall time ({budget:.0f} s of student training):", ""]
    for arm, splits in curves.items():
        for split in ("valid", "test"):
            reached = [at_time(v, c, budget) for v, c in splits[split]]
            lines.append(f"- {arm}, {split}: hypervolume {_spread(reached)}")
    return lines


def estimate_lines(runs: dict[str, list[dict]]) -> list[str]:
    """How close the latency measured before training came to the trained model's."""
    lines = []
    for arm, records in runs.items():
        ratios = [
            t["estimate_ratio"] for r in records for t in r["trials"] if t.get("estimate_ratio")
        ]
        if ratios:
            worst = max(ratios, key=lambda r: abs(r - 1.0))
            lines.append(
                f"- {arm}: trained p50 / pre-training estimate over {len(ratios)} trained "
                f"students: median {statistics.median(ratios):.2f}, worst {worst:.2f}"
            )
    return ["", "Latency before training:", "", *lines] if lines else []


def plot(runs: dict[str, list[dict]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    limit = load_study_config(STUDY).config.constraints.max_roc_auc_drop
    latency_ms = reference_latency(runs)
    figure = Figure(figsize=(11, 8), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    colours = {arm: f"C{index}" for index, arm in enumerate(runs)}
    for row, split in enumerate(("valid", "test")):
        for arm, records in runs.items():
            for index, record in enumerate(records):
                volumes, clock = curve(record, limit, split, latency_ms)
                label = arm if index == 0 else None
                trials = range(1, len(volumes) + 1)
                axes[row][0].step(trials, volumes, where="post", color=colours[arm], label=label)
                axes[row][1].step(clock, volumes, where="post", color=colours[arm], label=label)
        axes[row][0].set(xlabel="student trials", ylabel=f"hypervolume ({split})")
        axes[row][1].set(xlabel="wall time of student trials (s)", ylabel=f"hypervolume ({split})")
        axes[row][1].set_xscale("log")
        for axis in axes[row]:
            axis.grid(alpha=0.3)
            axis.legend(loc="lower right")
    figure.suptitle("Taiwan credit: hypervolume of the feasible front (one line per seed)")
    figure.savefig(PLOT, dpi=90)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
