"""onnxruntime as a target: the student exported to ONNX at the recipe's precision,
sessions with pinned threads, and honest latency numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from torch import nn

from autocompress.errors import Unsupported, UserError
from autocompress.passes import ONNX_PASSES
from autocompress.recipe import Recipe
from autocompress.targets.base import Materialized
from autocompress.targets.measurement import (
    Acceptance,
    Measurement,
    fingerprint_id,
    machine_fingerprint,
    steady_timings,
    time_runs,
)
from autocompress.targets.onnxruntime_config import OnnxRuntimeTargetConfig

if TYPE_CHECKING:
    from autocompress.tasks.base import Task

MODEL_FILE = "model.onnx"

# Which recipe precisions each execution provider has kernels for. Anything else is
# refused up front with a reason instead of being run on some other path.
PRECISIONS: dict[str, set[str]] = {
    "CPUExecutionProvider": {"fp32", "fp16", "int8-dynamic", "int8-static", "int4"},
    "CUDAExecutionProvider": {"fp32", "fp16", "int8-static", "int4"},
}


def precision_name(recipe: Recipe) -> str:
    if recipe.bits == 8:
        return f"int8-{recipe.int8_mode}"
    return {32: "fp32", 16: "fp16", 4: "int4"}[recipe.bits]


@dataclass(frozen=True)
class OnnxSession:
    """An onnxruntime session as a `Runnable`: the first output is the class scores
    (logits, or the credit graph's calibrated probabilities)."""

    session: ort.InferenceSession
    size_bytes: int  # of the ONNX file

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]

    @property
    def metadata(self) -> dict[str, str]:
        """The graph's `metadata_props` (the credit graph's threshold, classes, ...)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)


class OnnxRuntimeTarget:
    """Runs ONNX models with one execution provider, fixed threads and batch size."""

    def __init__(
        self, config: OnnxRuntimeTargetConfig, where: Callable[[str], str] = lambda key: key
    ) -> None:
        available = ort.get_available_providers()
        if config.execution_provider not in available:
            raise UserError(
                f"{where('target.execution_provider')}: {config.execution_provider!r} is not "
                f"available on this machine; available: {', '.join(available)}"
            )
        self.config = config

    @property
    def provider(self) -> str:
        return self.config.execution_provider

    def fingerprint(self) -> dict[str, object]:
        """Machine plus runtime: what makes two latencies comparable."""
        return {
            **machine_fingerprint(),
            "runtime": "onnxruntime",
            "runtime_version": ort.__version__,
            "provider": self.provider,
            "intra_op_threads": self.config.intra_op_threads,
            "batch_size": self.config.batch_size,
        }

    def check(self, recipe: Recipe) -> None:
        """Raise `Unsupported` with the reason when this target cannot run `recipe`."""
        precision = precision_name(recipe)
        supported = PRECISIONS.get(self.provider)
        if supported is not None and precision not in supported:
            raise Unsupported(
                f"{self.provider} has no kernels for {precision}; "
                f"it runs {', '.join(sorted(supported))}"
            )

    def materialize(
        self, task: Task, student: nn.Module, recipe: Recipe, folder: Path
    ) -> Materialized:
        """Export `student` to FP32 ONNX, run the ONNX passes on it in `ONNX_PASSES` order
        (the recipe's precision among them), let the task wrap it (preprocessing in front,
        for raw records) as `folder/model.onnx`, and open a session on it."""
        fp32_path = folder / "model.fp32.onnx"
        core_path = folder / "model.core.onnx"
        model_path = folder / MODEL_FILE
        task.export_onnx(student, fp32_path)
        calibration = task.calibration_feeds()
        graph = fp32_path
        for onnx_pass in ONNX_PASSES:
            transformed = folder / f"model.{onnx_pass.name}.onnx"
            onnx_pass.apply(graph, transformed, recipe, calibration)
            graph.unlink()
            graph = transformed
        graph.replace(core_path)
        task.wrap_onnx(core_path, model_path, self.session)
        core_path.unlink(missing_ok=True)
        return Materialized(runnable=self.load(model_path), files=[MODEL_FILE])

    def load(self, model_path: Path) -> OnnxSession:
        """A runnable session on an ONNX file (a trial's, an export's, a baseline's)."""
        return OnnxSession(self.session(model_path), Path(model_path).stat().st_size)

    def session(self, model_path: Path) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle sessions in one process must not spin and steal the cores being measured.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.provider != "CPUExecutionProvider":
            # A node the provider cannot run must fail the trial, not fall back to the CPU.
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        try:
            return ort.InferenceSession(str(model_path), options, providers=[self.provider])
        except Exception as error:  # onnxruntime raises its own untyped errors
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise Unsupported(f"{self.provider} cannot load this model: {first_line}") from error

    def measure(
        self,
        runnable: OnnxSession,
        feed: dict[str, np.ndarray],
        accept: Acceptance | None = None,
    ) -> Measurement:
        """Warm up, then time `repeats` runs of one fixed batch; timed again with
        back-off while the spread is over `max_cv` or `accept` refuses the timings
        (see `steady_timings`)."""
        config = self.config
        steady = steady_timings(
            lambda: time_runs(lambda: runnable.run(feed), config.warmup, config.repeats),
            config.max_cv,
            config.remeasure_attempts,
            config.remeasure_backoff_s,
            accept=accept,
        )
        return Measurement.from_steady(
            steady,
            size_bytes=runnable.size_bytes,
            warmup=self.config.warmup,
            batch_size=self.config.batch_size,
            threads=self.config.intra_op_threads,
            provider=self.provider,
            machine_id=fingerprint_id(self.fingerprint()),
        )
