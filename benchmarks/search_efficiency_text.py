"""The text half of `search_efficiency.py`: the search against hand recipes, one budget.

Run through `python benchmarks/search_efficiency.py text ...` (see its docstring).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from _report import REPO, machine_line, replace_section, versions_line
from optuna.artifacts import download_artifact
from optuna.trial import FrozenTrial, TrialState
from text_latency import Candidate, baselines, measure_interleaved

from autocompress.api import artifact_store, load_result, run_study
from autocompress.config import load_study_config
from autocompress.cost_summary import cost_control_lines, epochs_trained
from autocompress.front import TEACHER_ROLE, is_feasible
from autocompress.tasks import build_task

logger = logging.getLogger("autocompress")
TEXT_STUDY = REPO / "studies" / "fin_sentiment_minilm.yaml"
RECORDS = REPO / "runs" / "benchmarks" / "search_efficiency"
ARMS = ("search", "hand")
INT8_ONLY = {  # the first thing a user tries: the teacher itself, dynamic int8
    "layer_keep_ratio": 1.0,
    "pruning_ratio": 0.0,
    "ffn_pruning_ratio": 0.0,
    "pruning_importance": "l2",
    "finetune_epochs": 0,
    "bits": 8,
    "int8_mode": "dynamic",
    "per_channel": False,
}


def run_text(args: argparse.Namespace) -> int:
    loaded = load_study_config(TEXT_STUDY)
    data = Path(loaded.config.task.data.path)
    if not data.exists():
        print(f"text: {data} is absent; skipped")
        return 0
    if args.measure:
        return measure(args)
    if args.arm is None:
        raise SystemExit("text: name --arm search, hand or both, or --measure")
    if args.arm == "both":
        return run_both(args)
    folder = RECORDS / f"text-{args.arm}"
    folder.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        (folder / "study.db").unlink(missing_ok=True)  # ours: an earlier run of this arm
    path = study_file(args.arm, args.budget_min * 60, args.artifacts, folder)
    logger.info("text %s: running %s for %.0f minutes", args.arm, path, args.budget_min)
    run_study(path, storage=storage_url(folder), progress=False)
    return 0


GRACE_S = 120.0
"""After the budget, a trial still training no longer counts: its arm is stopped."""


def run_both(args: argparse.Namespace) -> int:
    """Both arms at once, one process each (one core each on a 2-core machine), stopped
    at the budget; then the side-by-side measurement in this process."""
    prepare_teacher(args.artifacts)
    RECORDS.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("search_efficiency.py")
    common = ["--budget-min", str(args.budget_min), "--artifacts", str(args.artifacts)]
    children = {
        arm: subprocess.Popen(
            [sys.executable, str(script), "text", "--arm", arm, "--fresh", *common],
            stdout=(RECORDS / f"text-{arm}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for arm in ARMS
    }
    deadline = time.monotonic() + args.budget_min * 60 + GRACE_S
    for arm, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.info("text %s: over the budget; stopped (its running trial does not count)", arm)
            child.send_signal(signal.SIGINT)  # the trial is recorded as stopped, not lost
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
    return measure(args)


def prepare_teacher(artifacts: Path) -> None:
    """Train (or load) the study's teacher on both cores before the arms start, so
    neither arm's budget pays for it and they do not both train it."""
    torch.set_num_threads(2)
    started = time.monotonic()
    build_task(load_study_config(TEXT_STUDY).config).teacher(artifacts / "teachers")
    logger.info("text teacher ready (%.0f s)", time.monotonic() - started)
    torch.set_num_threads(1)


def storage_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def study_file(arm: str, budget_s: float, artifacts: Path, folder: Path) -> Path:
    """The shipped text study as this arm runs it."""
    raw = yaml.safe_load(TEXT_STUDY.read_text())
    raw["study_name"] = f"efficiency-text-{arm}"
    raw["search_space"] = str((TEXT_STUDY.parent / raw["search_space"]).resolve())
    for key in ("path", "test_path"):
        raw["task"]["data"][key] = str((TEXT_STUDY.parent / raw["task"]["data"][key]).resolve())
    raw["artifacts_dir"] = str(artifacts.resolve())
    raw["timeout"] = budget_s
    hand = raw.pop("warm_start", [])
    if arm == "search":
        raw["n_trials"] = 1000  # the budget ends it
    else:
        # Trained to the end, one after another, as a user would; the space is widened to
        # admit "no fine-tuning" for the int8-only recipe.
        space = yaml.safe_load(Path(raw["search_space"]).read_text())
        space["finetune_epochs"] = {"low": 0, "high": space["finetune_epochs"]["high"]}
        raw["search_space"] = space
        raw["warm_start"] = [INT8_ONLY, *hand]
        raw["n_trials"] = 1 + len(raw["warm_start"])
        raw["cost_control"] = {"trial_budget_s": raw["cost_control"]["trial_budget_s"]}
    path = folder / f"{raw['study_name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def within_budget(study: optuna.Study, budget_s: float) -> tuple[list[FrozenTrial], Any]:
    """The trials that ended within the budget (counted from the teacher trial's start)."""
    trials = study.get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials if t.datetime_start is not None)
    end = start + timedelta(seconds=budget_s)
    return [t for t in trials if t.datetime_complete and t.datetime_complete <= end], start


def feasible_students(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The students within the study's limits on the validation split."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.user_attrs.get("role") != TEACHER_ROLE
        and is_feasible(t)
    ]


def label(arm: str, trial: FrozenTrial) -> str:
    return f"{arm}: trial {trial.number}"


def measure(args: argparse.Namespace) -> int:
    """Every feasible student of both arms (within the budget) is timed again here, beside
    the teacher and its dynamic int8, in interleaved rounds: each arm's selection is its
    fastest student by these timings. The figures its trials recorded while both arms
    (and whatever else) shared the machine decide nothing here."""
    budget_s = args.budget_min * 60
    results, arms = {}, {}
    for arm in ARMS:
        folder = RECORDS / f"text-{arm}"
        path = folder / f"efficiency-text-{arm}.yaml"
        if not path.exists():
            raise SystemExit(f"text: run --arm {arm} first ({path} is absent)")
        results[arm] = load_result(path, storage=storage_url(folder))
        trials, start = within_budget(results[arm].study, budget_s)
        arms[arm] = (feasible_students(trials), trials, start)
    first = results["search"]
    task = build_task(first.loaded.config)
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as workdir:
        work = Path(workdir)
        candidates = baselines(task, first, work)
        for arm, (feasible, _, _) in arms.items():
            for trial in feasible:
                model = work / f"{arm}-trial-{trial.number}.onnx"
                download_artifact(
                    artifact_store=artifact_store(results[arm].loaded),
                    file_path=str(model),
                    artifact_id=trial.user_attrs["artifacts"]["model.onnx"],
                )
                recipe = trial.user_attrs["recipe_summary"]
                candidates.append(Candidate(label(arm, trial), model, recipe))
        measure_interleaved(candidates, task, 1, args_for_timing(args), seq_length(first))
    timed = {c.name: c for c in candidates}
    chosen = {
        arm: (
            min(feasible, key=lambda t, arm=arm: timed[label(arm, t)].p50(1), default=None),
            trials,
            start,
        )
        for arm, (feasible, trials, start) in arms.items()
    }
    lines = text_section(candidates, chosen, arms, results, args)
    replace_section("search_efficiency_text", lines)
    (RECORDS / "text-measured.json").write_text(
        json.dumps({c.name: c.rounds for c in candidates}, indent=1)
    )
    print("\n".join(lines))
    return 0


def args_for_timing(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(rounds=args.rounds, repeats=100, warmup=20)


def seq_length(result) -> int:
    return result.loaded.config.task.model.max_seq_length


def _change(trial: FrozenTrial, split: str) -> str:
    """Macro-F1 drop in points with its paired interval, on `split`."""
    if split == "valid":
        drop = trial.user_attrs.get("f1_drop")
        interval = (trial.user_attrs.get("change_intervals") or {}).get("f1_drop")
    else:
        held = trial.user_attrs.get("held_out") or {}
        drop = (held.get("changes") or {}).get("f1_drop")
        interval = (held.get("intervals") or {}).get("f1_drop")
    if drop is None:
        return "–"
    text = f"{100 * drop:+.2f}"
    if interval:
        text += f" [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]"
    return text


def text_section(candidates, chosen, arms, results, args) -> list[str]:
    teacher = candidates[0]
    budget = args.budget_min
    lines = [
        "## Search efficiency, text: the search against hand recipes for one budget "
        "(`benchmarks/search_efficiency.py text`)",
        "",
        machine_line(),
        versions_line("torch", "onnxruntime", "transformers", "optuna"),
        f"- budget: {budget:.0f} minutes of wall time per arm from the teacher trial's start; "
        "both arms ran at the same time, one process each, one torch and one onnxruntime "
        "thread each, on this 2-core machine; only trials that ended within the budget count",
        "- `search`: `studies/fin_sentiment_minilm.yaml` with no warm start (sampler, "
        "latency before training, successive halving and the constraint rule as shipped); "
        "`hand`: dynamic int8 of the teacher, then the study file's hand recipes, each "
        "trained to its end",
        "- every student of either arm within the 1.0-point macro-F1 limit on the validation "
        "split (point estimate, as the study judges it) is timed again at the end, beside the "
        "teacher; an arm's selection (**bold**) is its fastest by those timings; Δ F1 = "
        "teacher − student in points with the paired 95% bootstrap interval, on validation "
        "and on the held-out test split",
        f"- timing: batch 1, sequence length {seq_length(results['search'])}, "
        f"{args.rounds} interleaved rounds × 100 runs in one process at the end; speed-up = "
        "teacher FP32 p50 / p50; first reached = minutes from the arm's start until the "
        "trial ended",
        "",
        "| candidate | recipe | Δ F1 valid (pts) | Δ F1 test (pts) | p50 1 thr (ms) | "
        "spread | speed-up | first reached (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    students = {
        label(arm, t): (t, start, t is chosen[arm][0])
        for arm, (feasible, _, start) in arms.items()
        for t in feasible
    }
    for candidate in candidates:
        valid = test = reached = "–"
        name = candidate.name
        if name in students:
            trial, start, selected = students[name]
            valid, test = _change(trial, "valid"), _change(trial, "test")
            reached = f"{(trial.datetime_complete - start).total_seconds() / 60:.0f}"
            name = f"**{name}**" if selected else name
        low, high = candidate.spread(1)
        lines.append(
            f"| {name} | {candidate.recipe} | {valid} | {test} | "
            f"{candidate.p50(1):.2f} | {low:.2f}–{high:.2f} | "
            f"{teacher.p50(1) / candidate.p50(1):.2f}× | {reached} |"
        )
    lines.append("")
    for arm, (trial, trials, _) in chosen.items():
        students = [t for t in trials if t.user_attrs.get("role") != TEACHER_ROLE]
        states = {s.name.lower(): sum(t.state == s for t in students) for s in TrialState}
        lines.append(
            f"- {arm}: {len(students)} student trials ended within the budget "
            f"({', '.join(f'{n} {k}' for k, n in states.items() if n)}), "
            f"{epochs_trained(students)} fine-tuning epochs; "
            + (f"selected trial {trial.number}" if trial else "no student within the limit")
        )
        lines += [f"  - {line}" for line in cost_control_lines(students)]
    lines.append("")
    return lines
