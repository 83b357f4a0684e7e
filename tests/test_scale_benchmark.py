"""benchmarks/scale.py at a tiny size: it builds its study through the product's own
bookkeeping (the synthetic trials carry what a real student's trial carries), exports a
real trial, and writes its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autocompress.front import TEACHER_ROLE, compute_front
from autocompress.store import Store, optuna_storage

REPO = Path(__file__).resolve().parents[1]
SIZE = 14
COPIED = 24  # SIZE through the Objective, the rest copies (--objective-trials)


def test_the_scale_benchmark_builds_a_real_layout_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "scale.py"),
            *("--sizes", str(SIZE), str(COPIED), "--repeats", "1", "--measured", "2"),
            *("--objective-trials", str(SIZE)),
            *("--root", str(tmp_path / "scale"), "--benchmarks", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "scale" / f"sqlite-small-{SIZE}"
    results = json.loads((folder / "results.json").read_text())
    assert results["trials"] == results["complete"] == SIZE
    assert results["exported_trial"] < results["real_trials"]  # a real trial, not retrained
    assert results["front_members"] >= 1
    assert results["snapshot_rows"]["autocompress_front_snapshots"] == results["complete"]
    assert results["dashboard_mb"] > 0 and results["database_mb"] > 0
    # The dashboard's note panel holds the teacher's and those of trials on the front when
    # they completed (every current member among them), not every trial's (note.md does).
    assert results["front_members"] <= results["dashboard_notes"] < results["complete"]
    # `--only-front`: the front's members and the teacher (unless it is one of them).
    shown = results["dashboard_front_trials"]
    assert results["front_members"] <= shown <= results["front_members"] + 1
    assert 0 < results["dashboard_front_mb"] < results["dashboard_mb"]
    table = out.read_text()
    assert "<!-- scale:start -->" in table and f"| sqlite | small | {SIZE} |" in table

    url = f"sqlite:///{folder / 'study.db'}"
    trials = optuna.load_study(study_name="scale", storage=optuna_storage(url)).get_trials()
    real = [
        t
        for t in trials[: results["real_trials"]]
        if t.state == TrialState.COMPLETE and t.user_attrs.get("role") != TEACHER_ROLE
    ]
    synthetic = trials[results["real_trials"] :]
    assert real and len(synthetic) == SIZE - results["real_trials"]
    # What a sampled real student's trial carries, synthetic ones carry, and no two
    # share params (the search would have pruned a repeat).
    expected = set().union(*(t.user_attrs.keys() for t in real)) - {"role"}
    for trial in synthetic:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.user_attrs) == expected
        assert kinds(trial.system_attrs) == kinds(real[-1].system_attrs)
    assert len({json.dumps(t.params, sort_keys=True) for t in synthetic}) == len(synthetic)

    # Copies: every attribute of the trial copied, the front recorded from every trial.
    folder = tmp_path / "scale" / f"sqlite-small-{COPIED}"
    results = json.loads((folder / "results.json").read_text())
    assert results["trials"] == results["complete"] == COPIED
    assert results["cloned_trials"] == COPIED - SIZE
    url = f"sqlite:///{folder / 'study.db'}"
    study = optuna.load_study(study_name="scale", storage=optuna_storage(url))
    trials = study.get_trials()
    built = SIZE - 2  # before the two timed trials
    for copy in trials[built : built + results["cloned_trials"]]:
        original = trials[results["real_trials"] + (copy.number - built) % (built - 4)]
        assert (copy.params, copy.values, copy.user_attrs) == (
            original.params,
            original.values,
            original.user_attrs,
        )
        assert copy.system_attrs == original.system_attrs
    stored = Store(url).latest_front("scale")
    assert stored is not None
    assert [m["trial_number"] for m in stored.members] == [
        m.trial_number for m in compute_front(study)
    ]


def kinds(system_attrs: dict) -> set[str]:
    """System attribute names without their ids (`artifacts:<uuid>`), enqueued params
    (a warm start's) left out."""
    return {name.split(":")[0] for name in system_attrs if name != "fixed_params"}
