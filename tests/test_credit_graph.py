"""The credit task's trial model, as the target measured it, against the Python pipeline.

What a trial measures and an export ships is `model.onnx` from `OnnxRuntimeTarget`:
the student's graph at its precision wrapped by `CreditTask.wrap_onnx`. Fed raw rows
with empty cells, ±inf, unseen categories and numbers written as text, it must give,
row by row and at every precision it accepts, what the Python pipeline gives
(`TabularPreprocessor.transform` → the same student graph → the calibration stored in
the graph); bad rows never move good rows' scores; a precision whose scores depend on
the batch (dynamic int8) is refused with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from autocompress.errors import Unsupported
from autocompress.passes.precision import apply_precision
from autocompress.recipe import Recipe
from autocompress.targets import OnnxRuntimeTarget
from autocompress.targets.onnxruntime_config import OnnxRuntimeTargetConfig
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.credit_config import DataConfig, PreprocessingConfig, TeacherConfig

PRECISIONS = {
    "fp32": Recipe(),
    "fp16": Recipe(bits=16),
    "int8-static": Recipe(bits=8, int8_mode="static", per_channel=True),
    "int4": Recipe(bits=4, int4_block_size=16),
}


@pytest.fixture(scope="module")
def task() -> CreditTask:
    torch.set_num_threads(1)
    data = DataConfig(
        path="embedded:germancredit", label="creditability", positive_label="bad", seed=0
    )
    declared = PreprocessingConfig(
        missing_indicator="always",
        columns={"credit_amount": {"transform": "log1p"}, "age_*": {"transform": "quantile"}},
    )
    return CreditTask(
        data, TeacherConfig(hidden_sizes=[32, 16], epochs=3, patience=2), preprocessing=declared
    )


@pytest.fixture(scope="module")
def teacher(task: CreditTask, tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return task.teacher(tmp_path_factory.mktemp("teacher-cache"))


def awkward_rows(task: CreditTask) -> tuple[pd.DataFrame, list[int]]:
    """Test applicants, some of them with cells no training row had; and which."""
    rows = task.splits["test"][0].head(40).copy().astype(object)
    bad = [1, 4, 7, 10, 13]
    rows.iloc[1, rows.columns.get_loc("credit_amount")] = np.nan
    rows.iloc[4, rows.columns.get_loc("credit_amount")] = np.inf
    rows.iloc[7, rows.columns.get_loc("age_in_years")] = -np.inf
    rows.iloc[10, rows.columns.get_loc("purpose")] = "a purpose never seen"
    rows.iloc[13, rows.columns.get_loc("duration_in_month")] = " 24 "  # a number as text
    rows.iloc[13, rows.columns.get_loc("housing")] = None
    return rows, bad


def python_pipeline(
    task: CreditTask, core: Path, rows: pd.DataFrame, calibration: tuple[float, float]
) -> np.ndarray:
    logits = ort.InferenceSession(str(core)).run(
        None, {"features": task.preprocessor.transform(rows)}
    )[0]
    a, b = calibration
    margin = logits[:, 1].astype(np.float64) - logits[:, 0]
    return 1.0 / (1.0 + np.exp(-(a * margin + b)))


@pytest.mark.parametrize("name", PRECISIONS)
def test_measured_graph_scores_raw_rows_as_the_python_pipeline(
    name: str, task: CreditTask, teacher: torch.nn.Module, tmp_path: Path
) -> None:
    recipe = PRECISIONS[name]
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig(batch_size=16, warmup=1, repeats=3))
    model = target.materialize(task, teacher, recipe, tmp_path)
    # The same student graph, made again the way the target made it (deterministic).
    fp32, core = tmp_path / "again.fp32.onnx", tmp_path / "again.core.onnx"
    task.export_onnx(teacher, fp32)
    apply_precision(fp32, core, recipe, task.calibration_feeds())
    metadata = model.runnable.metadata
    stored = json.loads(metadata["autocompress.calibration"])
    calibration = (stored["a"], stored["b"])

    rows, bad = awkward_rows(task)
    scored = model.runnable.run(task.preprocessor.raw_feeds(rows))
    expected = python_pipeline(task, core, rows, calibration)
    np.testing.assert_allclose(scored[:, 1], expected, atol=1e-5)
    np.testing.assert_allclose(scored.sum(axis=1), 1.0, atol=1e-6)

    good = [i for i in range(len(rows)) if i not in bad]
    alone = model.runnable.run(task.preprocessor.raw_feeds(rows.iloc[good]))
    np.testing.assert_array_equal(alone, scored[good])
    assert onnx.load(str(tmp_path / "model.onnx")).graph.input[0].name == rows.columns[0]


def test_dynamic_int8_is_refused_because_scores_would_depend_on_the_batch(
    task: CreditTask, teacher: torch.nn.Module, tmp_path: Path
) -> None:
    target = OnnxRuntimeTarget(OnnxRuntimeTargetConfig())
    with pytest.raises(Unsupported, match="depend on the other rows"):
        target.materialize(task, teacher, Recipe(bits=8, int8_mode="dynamic"), tmp_path)
