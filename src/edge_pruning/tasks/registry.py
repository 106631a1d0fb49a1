"""Every task by name."""

from __future__ import annotations

from typing import Callable

from .base import Task
from .boolean import BooleanExpressionsTask
from .custom import CustomTask
from .gp import GenderedPronounTask
from .gt import GreaterThanTask
from .ioi import IOITask
from .mib import MIB_TASKS
from .tracr import TRACR_TASKS

TASKS: dict[str, Callable[..., Task]] = {
    "ioi": IOITask,
    "ioi-t1": IOITask,
    "gt": GreaterThanTask,
    "gp": GenderedPronounTask,
    "custom": CustomTask,
    "boolean_expressions_ip": lambda **kw: BooleanExpressionsTask(fewshot=False, **kw),
    "boolean_expressions_fs": lambda **kw: BooleanExpressionsTask(fewshot=True, **kw),
    **TRACR_TASKS,
    **MIB_TASKS,
}


def get_task(name: str, **options) -> Task:
    """A task by name; `options` go to its constructor (e.g. ``prompt_style="qa"``)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)
