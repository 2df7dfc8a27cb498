"""Self-supervised pretext tasks (one module per task) and the pretraining loop.

``PRETEXT_TASKS`` maps a task name to its class; see docs/PRETEXT.md.
"""

from harness.pretext.base import PRETEXT_TASKS, PretextError, PretextTask, get_task, register
from harness.pretext import sort, motion, track, predict, shuffle, oddoneout, pose  # noqa: F401,E402  (registers)

__all__ = ["PRETEXT_TASKS", "PretextError", "PretextTask", "get_task", "register"]
