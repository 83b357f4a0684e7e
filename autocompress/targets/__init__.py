"""Targets: where a trial's model runs and is measured. A new runtime or device is a
new module here, implementing `Target` (see `base.py`), plus one line in `TARGETS`."""

from __future__ import annotations

from collections.abc import Callable

from autocompress.config import StudyConfig
from autocompress.targets.base import Materialized, Runnable, Target
from autocompress.targets.measurement import Measurement, fingerprint_id, machine_fingerprint
from autocompress.targets.onnxruntime import OnnxRuntimeTarget, OnnxSession
from autocompress.targets.torch_cuda import TorchCudaTarget, TorchModel

TARGETS: dict[str, Callable[..., Target]] = {
    "onnxruntime": OnnxRuntimeTarget,
    "torch-cuda": TorchCudaTarget,
}


def build_target(config: StudyConfig) -> Target:
    """The study's target; an unusable one raises `UserError` naming the study file."""
    return TARGETS[config.target.runtime](config.target, where=config.where)


__all__ = [
    "Materialized",
    "Measurement",
    "OnnxRuntimeTarget",
    "OnnxSession",
    "Runnable",
    "Target",
    "TorchCudaTarget",
    "TorchModel",
    "build_target",
    "fingerprint_id",
    "machine_fingerprint",
    "TARGETS",
]
