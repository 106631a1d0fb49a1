"""The Tracr tasks under their earlier module name; they live in `tasks.tracr`."""

from .tasks.tracr import FRACTION_ATOL, TRACR_TASKS, ReverseTask, TracrTask, XProportionTask, get_tracr_task

__all__ = ["FRACTION_ATOL", "TRACR_TASKS", "ReverseTask", "TracrTask", "XProportionTask", "get_tracr_task"]
