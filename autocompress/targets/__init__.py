"""Targets: where a trial's model runs and is measured. A new runtime or device is a
new module here, implementing `Target` (see `base.py`), plus one line in `TARGETS`
(tests/test_extension_points.py adds one that way: onnxruntime with two threads).

`TARGETS` owns the runtime names: the study file's `target.runtime` accepts its keys
(the first is the default) and nothing else spells them; `autocompress.config` reads
them when it is imported, so a runtime is registered before that. A recipe field applies
to every registered runtime unless its `FieldSpec.runtimes` says which. Each target is
imported when a study uses it (onnxruntime, torch and bitsandbytes take seconds to
import), so reading the names here, as the study file check does, loads none of them.

Targets share one `target:` section of the study file (`config.TargetConfig`); a target
with settings of its own has no section of its own yet. The onnxruntime target (and a
subclass of it) runs `autocompress.passes.ONNX_PASSES` on the exported graph; torch-cuda
runs none, so an ONNX pass's field that means nothing there declares `runtimes`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autocompress.config import StudyConfig
    from autocompress.targets.base import Target

# runtime name -> "module:class"
TARGETS: dict[str, str] = {
    "onnxruntime": "autocompress.targets.onnxruntime:OnnxRuntimeTarget",
    "torch-cuda": "autocompress.targets.torch_cuda:TorchCudaTarget",
}

_EXPORTS = {  # what this package offers, by the module that defines it
    "Materialized": "base",
    "Runnable": "base",
    "Target": "base",
    "ReloadsExports": "base",
    "Measurement": "measurement",
    "fingerprint_id": "measurement",
    "machine_fingerprint": "measurement",
    "OnnxRuntimeTarget": "onnxruntime",
    "OnnxSession": "onnxruntime",
    "TorchCudaTarget": "torch_cuda",
    "TorchModel": "torch_cuda",
}


def target_class(runtime: str) -> type[Target]:
    module, _, name = TARGETS[runtime].partition(":")
    return getattr(import_module(module), name)


def build_target(config: StudyConfig) -> Target:
    """The study's target; an unusable one raises `UserError` naming the study file."""
    return target_class(config.target.runtime)(config.target, where=config.where)


def __getattr__(name: str) -> Any:  # `from autocompress.targets import OnnxRuntimeTarget`
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TARGETS", "build_target", "target_class", *_EXPORTS]
