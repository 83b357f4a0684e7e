"""Tasks: what is compressed. A new kind of model or data is a new module here."""

from __future__ import annotations

from autocompress.config import StudyConfig
from autocompress.tasks.base import Task
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.text import TextTask

TASKS: dict[str, type[Task]] = {"credit": CreditTask, "text": TextTask}


def build_task(config: StudyConfig) -> Task:
    """Make the study's task and load (validate) its data; bad data raises `UserError`."""
    return TASKS[config.task.kind].from_config(config)


__all__ = ["Task", "CreditTask", "TextTask", "build_task", "TASKS"]
