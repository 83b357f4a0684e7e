"""Targets: where latency is measured. A new runtime or device is a new module here."""

from __future__ import annotations

from autocompress.config import StudyConfig
from autocompress.targets.measurement import Measurement, fingerprint_id, machine_fingerprint
from autocompress.targets.onnxruntime import OnnxRuntimeTarget

TARGETS = {"onnxruntime": OnnxRuntimeTarget}


def build_target(config: StudyConfig) -> OnnxRuntimeTarget:
    """The study's target; an unusable one raises `UserError` naming the study file."""
    return TARGETS[config.target.runtime](config.target, where=config.where)


__all__ = [
    "Measurement",
    "OnnxRuntimeTarget",
    "build_target",
    "fingerprint_id",
    "machine_fingerprint",
    "TARGETS",
]
