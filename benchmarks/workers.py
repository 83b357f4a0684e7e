"""One worker or two on one PostgreSQL study: trials per minute, and distinct trials.

Runs the shipped German credit study (`studies/german_credit.yaml`) on a PostgreSQL
server of its own (`.ci/postgres.sh`, or `--storage URL`): `--trials` trials with one
`autocompress run` worker, then the same number shared by two workers started
together, alternating for `--rounds` rounds, each in a new study. The teacher is
trained once beforehand (its cache is shared), so the rounds time the search only.
Writes its section of BENCHMARKS.md.

    python benchmarks/workers.py [--trials 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from _report import REPO, machine_line, replace_section, versions_line
from optuna.trial import TrialState

from autocompress.store import optuna_storage

STUDY = REPO / "studies" / "german_credit.yaml"
POSTGRES = REPO / ".ci" / "postgres.sh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--storage", help="a PostgreSQL URL; default: a server of our own")
    parser.add_argument("--port", default="55480")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autocompress-workers-") as work:
        work_dir = Path(work)
        # A folder of its own under /tmp: the server runs as `postgres`, which cannot
        # enter this root-only working folder.
        cluster = Path(tempfile.mkdtemp(prefix="autocompress-pg-"))
        url = args.storage or start_postgres(cluster, args.port)
        try:
            study_file = write_study(work_dir, url)
            run_workers(study_file, work_dir, "warm-up", 1, 1)  # trains and caches the teacher
            results: dict[int, list[dict]] = {1: [], 2: []}
            for round_number in range(args.rounds):
                for workers in (1, 2):
                    name = f"round{round_number}-{workers}w"
                    results[workers].append(
                        run_workers(study_file, work_dir, name, workers, args.trials)
                    )
                    print(name, results[workers][-1], flush=True)
        finally:
            if not args.storage:
                subprocess.run(["bash", str(POSTGRES), "stop", str(cluster)], check=False)
            shutil.rmtree(cluster, ignore_errors=True)
    write_section(results, args)
    return 0


def start_postgres(cluster: Path, port: str) -> str:
    started = subprocess.run(
        ["bash", str(POSTGRES), "start", str(cluster), port],
        capture_output=True,
        text=True,
        check=True,
    )
    return started.stdout.strip().splitlines()[-1]


def write_study(work_dir: Path, url: str) -> Path:
    study = yaml.safe_load(STUDY.read_text())
    study["search_space"] = str((STUDY.parent / study["search_space"]).resolve())
    study["storage"] = url
    study["artifacts_dir"] = str(work_dir / "artifacts")
    study["export"]["dir"] = str(work_dir / "exports")
    path = work_dir / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run_workers(study_file: Path, cwd: Path, name: str, workers: int, trials: int) -> dict:
    """`trials` trials of a new study, shared by `workers` processes started together."""
    share = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autocompress",
                "run",
                str(study_file),
                "--study-name",
                name,
                "--n-trials",
                str(count),
                "--no-export",
            ],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for count in share
    ]
    errors = [process.communicate()[1] for process in processes]
    elapsed = time.monotonic() - started
    for process, stderr in zip(processes, errors, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"{name}: a worker exited {process.returncode}:\n{stderr[-3000:]}")
    url = yaml.safe_load(study_file.read_text())["storage"]
    storage = optuna_storage(url)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    storage.engine.dispose()
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    students = [t for t in trials if t.params and t.state != TrialState.FAIL and t not in repeats]
    distinct = {tuple(sorted(t.params.items())) for t in students}
    return {
        "seconds": elapsed,
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "students": len(students),
        "distinct": len(distinct),
        "repeats": len(repeats),
        "per_minute": 60.0 * len(trials) / elapsed,
    }


def write_section(results: dict[int, list[dict]], args: argparse.Namespace) -> None:
    rate = {w: statistics.median(r["per_minute"] for r in runs) for w, runs in results.items()}
    lines = [
        "## Workers: one or two on one PostgreSQL study",
        "",
        f"Produced by `python benchmarks/workers.py --trials {args.trials} --rounds "
        f"{args.rounds}`: the shipped German credit study, {args.trials} trials per run, "
        "in a new study each run, one worker and two workers started together in "
        "alternating rounds; the teacher was trained and cached before the first round.",
        "",
        machine_line(),
        versions_line("optuna", "torch", "onnxruntime", "psycopg", "sqlalchemy"),
        "",
        "| run | workers | wall s | trials | complete | pruned | RUNNING left | student "
        "trials run | distinct param sets among them | sampler repeats skipped | trials / min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, runs in results.items():
        for index, r in enumerate(runs):
            lines.append(
                f"| {index + 1} | {workers} | {r['seconds']:.1f} | {r['trials']} | "
                f"{r['complete']} | {r['pruned']} | {r['running']} | {r['students']} | "
                f"{r['distinct']} | {r['repeats']} | {r['per_minute']:.1f} |"
            )
    lines += [
        "",
        f"Median trials per minute: 1 worker {rate[1]:.1f}, 2 workers {rate[2]:.1f} "
        f"({rate[2] / rate[1]:.2f}×) on {os.cpu_count()} logical cores. Two workers "
        "share the cores for training and for measuring, so the speed-up stays below 2×, "
        "and latencies measured while the other worker trains are noisier.",
        "",
    ]
    replace_section("workers", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
