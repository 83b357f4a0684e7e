"""The settings of the onnxruntime target (`target: {runtime: onnxruntime, ...}` in a
study file, the default runtime).

Light: pydantic only, read with every study file; the target itself is `onnxruntime.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from autocompress.targets.settings import MeasurementConfig


class OnnxRuntimeTargetConfig(MeasurementConfig):
    # Exported ONNX graphs, run by onnxruntime with one execution provider.
    runtime: Literal["onnxruntime"] = "onnxruntime"
    execution_provider: str = "CPUExecutionProvider"
    intra_op_threads: Annotated[int, Field(ge=1)] = 1
