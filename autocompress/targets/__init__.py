"""Targets: where latency is measured. A new runtime or device is a new module here."""

from __future__ import annotations

from autocompress.config import TargetConfig
from autocompress.targets.measurement import Measurement, fingerprint_id, machine_fingerprint
from autocompress.targets.onnxruntime import OnnxRuntimeTarget

TARGETS = {"onnxruntime": OnnxRuntimeTarget}


def build_target(config: TargetConfig) -> OnnxRuntimeTarget:
    return TARGETS[config.runtime](config)


__all__ = [
    "Measurement",
    "OnnxRuntimeTarget",
    "build_target",
    "fingerprint_id",
    "machine_fingerprint",
    "TARGETS",
]
