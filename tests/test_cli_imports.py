"""Commands that only read a study do not import the training stack.

`autocompress front` on a small study used to take seconds, nearly all of it importing
torch, scikit-learn, onnxruntime and torch_pruning for nothing (issue 16). Each command
here runs the real CLI in a fresh process and reports which heavy libraries it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autocompress.api import run_study
from tests.conftest import tiny_study_dict, write_study

# What the search and training need, and reading a study does not.
TRAINING_STACK = {
    "lightgbm",
    "onnxmltools",
    "onnxruntime",
    "pandas",
    "scipy",
    "sklearn",
    "torch",
    "torch_pruning",
    "transformers",
}
# Runs one command in-process, then prints its exit code and the top-level modules loaded.
RUN_AND_LIST = """
import json, sys
from autocompress.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-trial study (the teacher) and its export: the study file and the folder.
    Small and without baselines: only what the commands read matters here."""
    folder = tmp_path_factory.mktemp("cli-imports")
    study = tiny_study_dict(folder, n_trials=1)
    study["task"] |= {
        "teacher": {"hidden_sizes": [16], "epochs": 1, "patience": 1},
        "baselines": [],
    }
    path = write_study(folder, study)
    out = run_study(path, progress=False).export(folder / "export")
    return path, out


def loaded_by(*args: str) -> set[str]:
    """The top-level modules `autocompress ARGS` loaded in a fresh process (it must succeed)."""
    process = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.returncode == 0, process.stderr
    found = json.loads(process.stdout.strip().splitlines()[-1])
    assert found["code"] == 0, process.stdout + process.stderr
    return set(found["modules"])


def test_front_loads_no_training_stack(study: tuple[Path, Path]) -> None:
    path, _ = study
    assert sorted(loaded_by("front", str(path)) & TRAINING_STACK) == []


def test_verify_loads_no_training_stack(study: tuple[Path, Path]) -> None:
    _, out = study
    assert sorted(loaded_by("verify", str(out)) & TRAINING_STACK) == []


def test_export_of_recorded_seeds_loads_onnx_only(study: tuple[Path, Path]) -> None:
    """Its seeds are recorded, so it trains nothing: onnx reads the graph's metadata."""
    path, out = study
    modules = loaded_by("export", str(path), "--out", str(out.parent / "again"))
    assert sorted(modules & TRAINING_STACK) == []
    assert "onnx" in modules
