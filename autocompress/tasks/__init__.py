"""Tasks: what is compressed. A new kind of data (and the teacher trained on it) is a new
module here, plus one line in `TASKS`; what a model can do structurally is the model's
own (`autocompress.models.capabilities`).

Each kind is imported when a study uses it: the text task pulls in transformers, which
takes seconds to import and which a credit study (or `export`, `front`) never needs.
`Task` itself (torch, sklearn) is imported on first use too, so that reading a module
of this package (`tabular_onnx`'s metadata keys, for `export`) does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autocompress.config import StudyConfig
    from autocompress.tasks.base import Task
    from autocompress.tasks.credit import CreditTask
    from autocompress.tasks.text import TextTask

# task kind -> "module:class"
TASKS: dict[str, str] = {
    "credit": "autocompress.tasks.credit:CreditTask",
    "text": "autocompress.tasks.text:TextTask",
}


def task_class(kind: str) -> type[Task]:
    module, _, name = TASKS[kind].partition(":")
    return getattr(import_module(module), name)


def build_task(config: StudyConfig) -> Task:
    """Make the study's task and load (validate) its data; bad data raises `UserError`."""
    return task_class(config.task.kind).from_config(config)


def __getattr__(name: str) -> type[Task]:  # `from autocompress.tasks import TextTask` still works
    if name == "Task":
        from autocompress.tasks.base import Task

        return Task
    kinds = {path.rpartition(":")[2]: kind for kind, path in TASKS.items()}
    if name in kinds:
        return task_class(kinds[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Task", "CreditTask", "TextTask", "build_task", "task_class", "TASKS"]
