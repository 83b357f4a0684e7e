"""Commands that only read a study do not import the training stack.

`autocompress front` on a small study used to take seconds, nearly all of it importing
torch, scikit-learn, onnxruntime and torch_pruning for nothing (issue 16). Each command
here runs the real CLI in a fresh process and reports which heavy libraries it loaded.

Then `front` and `export` still spent a second importing what reading does not need:
alembic (0.2 s, to check schema revisions Optuna and we read with one SELECT each) and
onnx (1.5 s, to read the exported graph's metadata). Wall times are not asserted (they
depend on the machine); what each command imports is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, text

from autocompress.api import run_study
from autocompress.store import optuna_storage
from autocompress.store.connection import OPTUNA_HEADS
from autocompress.tasks.graph_keys import read_metadata
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
# What a database at its schema's head and an existing export are read without: alembic
# creates and upgrades tables; onnx (with ml_dtypes) builds and checks graphs.
NOT_FOR_READING = TRAINING_STACK | {"alembic", "mako", "onnx", "ml_dtypes"}
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


def test_front_loads_nothing_reading_does_not_need(study: tuple[Path, Path]) -> None:
    path, _ = study
    assert sorted(loaded_by("front", str(path)) & NOT_FOR_READING) == []
    assert sorted(loaded_by("front", str(path), "--json") & NOT_FOR_READING) == []


def test_verify_loads_no_training_stack(study: tuple[Path, Path]) -> None:
    _, out = study
    assert sorted(loaded_by("verify", str(out)) & TRAINING_STACK) == []


def test_export_of_recorded_seeds_loads_nothing_reading_does_not_need(
    study: tuple[Path, Path],
) -> None:
    """Its seeds are recorded, so it trains nothing; the graph's metadata (threshold,
    classes) is read from the file without onnx."""
    path, out = study
    for policy in ("fastest", "most_accurate"):
        modules = loaded_by(
            "export", str(path), "--out", str(out.parent / f"again-{policy}"), "--policy", policy
        )
        assert sorted(modules & NOT_FOR_READING) == []
    again = json.loads((out.parent / "again-fastest" / "metrics.json").read_text())
    first = json.loads((out / "metrics.json").read_text())
    assert {k: again.get(k) for k in ("classes", "decision_threshold", "decision_rule")} == {
        k: first.get(k) for k in ("classes", "decision_threshold", "decision_rule")
    }
    assert "decision_threshold" in again  # a credit graph carries it


def test_graph_metadata_reads_as_onnx_reads_it(study: tuple[Path, Path], tmp_path: Path) -> None:
    """The wire-format reader against onnx itself: the exported graph, and a graph with
    repeated keys, an empty value, non-ASCII text and a large initializer before them."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    def onnx_reads(model_path: Path) -> dict[str, str]:
        return {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}

    _, out = study
    exported = out / "model.onnx"
    assert read_metadata(exported) == onnx_reads(exported)
    assert read_metadata(exported)  # the credit graph's threshold, classes, ...

    weights = numpy_helper.from_array(np.arange(100_000, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [100_000])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [100_000])],
        [weights],
    )
    model = helper.make_model(graph, doc_string="d" * 300)
    helper.set_model_props(model, {"a": "1", "empty": "", "é": "€ ✓"})
    model.metadata_props.add(key="a", value="2")  # repeated: the last one counts
    built = tmp_path / "built.onnx"
    onnx.save(model, str(built))
    assert read_metadata(built) == onnx_reads(built) == {"a": "2", "empty": "", "é": "€ ✓"}
    built.write_bytes(built.read_bytes()[:-3])
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_metadata(built)


def test_readers_open_optuna_tables_as_optuna_does(study: tuple[Path, Path]) -> None:
    """A database at this optuna's head is opened without alembic, into a storage with
    the attributes `RDBStorage()` gives one; one at another revision is opened by
    Optuna itself, which refuses it."""
    path, _ = study
    url = f"sqlite:///{path.parent / 'study.db'}"
    full = optuna.storages.RDBStorage(url)
    assert OPTUNA_HEADS.get(optuna.__version__) == full.get_head_version()  # update the pin
    ready = optuna_storage(url)
    assert type(ready) is optuna.storages.RDBStorage
    assert ready._version_manager is None  # it took the short way
    assert sorted(vars(ready)) == sorted(vars(full))
    assert ready.get_all_studies()[0].user_attrs == full.get_all_studies()[0].user_attrs
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'v3.0.0.d'"))
        with pytest.raises(RuntimeError, match="no longer compatible"):
            optuna_storage(url)
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE alembic_version SET version_num = :head"),
                {"head": full.get_head_version()},
            )
        engine.dispose()
