"""Tasks: what is compressed. A new kind of data (and the teacher trained on it) is two
new modules here, the task (a `Task`) and its settings (a pydantic model, light: no
torch), plus one line in `TASKS` naming both; nothing else spells the kind.

The settings class is the study file's `task:` section for that kind: its `kind:
Literal[...]` is the kind's name (`autocompress.config` checks it against the key here
and builds the study file's union of task sections from these classes), and it says
what the kind offers to recipe fields (`offers`, a ClassVar: the model protocols of
`autocompress.models.capabilities` its students implement, and what its data can do):
a search-space field that needs something the kind does not offer (`FieldSpec.needs`)
is refused when the study file is read. What a model can do structurally is the
model's own: passes ask the model, never the task.

Each task is imported when a study uses it: the text task pulls in transformers, which
takes seconds to import and which a credit study (or `export`, `front`) never needs.
`Task` itself (torch, sklearn) is imported on first use too, so that reading a module
of this package (the settings, `tabular_onnx`'s metadata keys for `export`) does not
load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pydantic import BaseModel

    from autocompress.config import StudyConfig
    from autocompress.tasks.base import Task
    from autocompress.tasks.credit import CreditTask
    from autocompress.tasks.text import TextTask


class TaskEntry(NamedTuple):
    """One task kind: its `Task` and its settings, each as "module:class"."""

    task: str
    config: str


# task kind -> its task and its settings
TASKS: dict[str, TaskEntry] = {
    "credit": TaskEntry(
        "autocompress.tasks.credit:CreditTask", "autocompress.tasks.credit_config:CreditTaskConfig"
    ),
    "text": TaskEntry(
        "autocompress.tasks.text:TextTask", "autocompress.tasks.text_config:TextTaskConfig"
    ),
}


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def task_class(kind: str) -> type[Task]:
    return _load(TASKS[kind].task)


def task_config_class(kind: str) -> type[BaseModel]:
    """The settings of `kind` (light to import)."""
    return _load(TASKS[kind].config)


def build_task(config: StudyConfig) -> Task:
    """Make the study's task and load (validate) its data; bad data raises `UserError`."""
    return task_class(config.task.kind).from_config(config)


def __getattr__(name: str) -> type[Task]:  # `from autocompress.tasks import TextTask` still works
    if name == "Task":
        from autocompress.tasks.base import Task

        return Task
    kinds = {entry.task.rpartition(":")[2]: kind for kind, entry in TASKS.items()}
    if name in kinds:
        return task_class(kinds[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Task",
    "CreditTask",
    "TextTask",
    "TaskEntry",
    "build_task",
    "task_class",
    "task_config_class",
    "TASKS",
]
