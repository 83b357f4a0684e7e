"""onnxruntime as a target: sessions with pinned threads, and honest latency numbers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autocompress.config import TargetConfig
from autocompress.errors import Unsupported, UserError
from autocompress.recipe import Recipe
from autocompress.targets.measurement import Measurement, fingerprint_id, machine_fingerprint

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


class OnnxRuntimeTarget:
    """Runs ONNX models with one execution provider, fixed threads and batch size."""

    def __init__(self, config: TargetConfig, where: Callable[[str], str] = lambda key: key) -> None:
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
        self, session: ort.InferenceSession, feed: dict[str, np.ndarray], model_path: Path
    ) -> Measurement:
        """Warm up, then time `repeats` runs of one fixed batch."""
        for _ in range(self.config.warmup):
            session.run(None, feed)
        timings = []
        for _ in range(self.config.repeats):
            start = time.perf_counter()
            session.run(None, feed)
            timings.append(time.perf_counter() - start)
        return Measurement.from_timings(
            timings,
            size_bytes=Path(model_path).stat().st_size,
            warmup=self.config.warmup,
            batch_size=self.config.batch_size,
            threads=self.config.intra_op_threads,
            provider=self.provider,
            machine_id=fingerprint_id(self.fingerprint()),
        )
