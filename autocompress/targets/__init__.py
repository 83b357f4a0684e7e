"""Targets: where a trial's model runs and is measured. A new runtime or device is two
new modules here, the target (implementing `Target`, see `base.py`) and its settings (a
pydantic model, light: no torch, no onnxruntime), plus one line in `TARGETS` naming both
(tests/test_extension_points.py adds one that way: onnxruntime with two threads).

`TARGETS` owns the runtime names: the study file's `target.runtime` accepts its keys
(the first is the default, used when the `target:` section leaves `runtime` out) and
nothing else spells them; `autocompress.config` reads them when it is imported, so a
runtime is registered before that. A recipe field applies to every registered runtime
unless its `FieldSpec.runtimes` says which. Each target is imported when a study uses it
(onnxruntime, torch and bitsandbytes take seconds to import), so reading the names and
the settings here, as the study file check does, loads none of them.

The settings class is the study file's `target:` section for that runtime: its `runtime:
Literal[...]` is the runtime's name (`autocompress.config` checks it against the key
here and builds the study file's union of target sections from these classes), and it
extends `settings.MeasurementConfig`, the measurement settings every target honours
(batch size, warm-up, repeats, re-measuring). The rest is the runtime's own: a key of
another runtime's section is refused (`execution_provider` and `intra_op_threads` are
onnxruntime's). The onnxruntime target (and a subclass of it) runs
`autocompress.passes.ONNX_PASSES` on the exported graph; torch-cuda runs none, so an
ONNX pass's field that means nothing there declares `runtimes`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from autocompress.config import StudyConfig
    from autocompress.targets.base import Target
    from autocompress.targets.settings import MeasurementConfig


class TargetEntry(NamedTuple):
    """One runtime: its `Target` and its settings, each as "module:class"."""

    target: str
    config: str


# runtime name -> its target and its settings
TARGETS: dict[str, TargetEntry] = {
    "onnxruntime": TargetEntry(
        "autocompress.targets.onnxruntime:OnnxRuntimeTarget",
        "autocompress.targets.onnxruntime_config:OnnxRuntimeTargetConfig",
    ),
    "torch-cuda": TargetEntry(
        "autocompress.targets.torch_cuda:TorchCudaTarget",
        "autocompress.targets.torch_cuda_config:TorchCudaTargetConfig",
    ),
}

_EXPORTS = {  # what this package offers, by the module that defines it
    "Materialized": "base",
    "Runnable": "base",
    "Target": "base",
    "ReloadsExports": "base",
    "Measurement": "measurement",
    "fingerprint_id": "measurement",
    "machine_fingerprint": "measurement",
    "MeasurementConfig": "settings",
    "OnnxRuntimeTarget": "onnxruntime",
    "OnnxRuntimeTargetConfig": "onnxruntime_config",
    "OnnxSession": "onnxruntime",
    "TorchCudaTarget": "torch_cuda",
    "TorchModel": "torch_cuda",
    "TorchCudaTargetConfig": "torch_cuda_config",
}


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def target_class(runtime: str) -> type[Target]:
    return _load(TARGETS[runtime].target)


def target_config_class(runtime: str) -> type[MeasurementConfig]:
    """The settings of `runtime` (light to import)."""
    return _load(TARGETS[runtime].config)


def build_target(config: StudyConfig) -> Target:
    """The study's target; an unusable one raises `UserError` naming the study file."""
    return target_class(config.target.runtime)(config.target, where=config.where)


def __getattr__(name: str) -> Any:  # `from autocompress.targets import OnnxRuntimeTarget`
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TARGETS",
    "TargetEntry",
    "build_target",
    "target_class",
    "target_config_class",
    *_EXPORTS,
]
