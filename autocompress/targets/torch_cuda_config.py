"""The settings of the torch-cuda target (`target: {runtime: torch-cuda, ...}` in a
study file): the measurement settings only.

Light: pydantic only, read with every study file; the target itself is `torch_cuda.py`.
"""

from __future__ import annotations

from typing import Literal

from autocompress.targets.settings import MeasurementConfig


class TorchCudaTargetConfig(MeasurementConfig):
    # The PyTorch model on a GPU, with bitsandbytes for 8 and 4 bits.
    runtime: Literal["torch-cuda"] = "torch-cuda"
