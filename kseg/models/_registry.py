"""The model registry and the decorator architectures register with.

Kept apart from ``kseg/models/__init__.py`` so architecture modules can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kseg.config import Task
from kseg.registry import Registry

#: name -> builder ``fn(x, **options) -> features`` (a tensor, or a list for deep supervision)
MODELS: Registry[Callable[..., Any]] = Registry("model")

_TASKS: dict[str, str] = {}


def register_model(name: str, *, task: Task = Task.SEGMENT, description: str = ""):
    """Register an architecture builder.

    The builder takes the normalized input tensor and keyword-only options (their defaults are the
    model's defaults) and returns the feature tensor the shared head turns into the output.
    ``task="denoise"`` gets the image head (denoised pixels) instead of the mask head.
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        MODELS.register(name, description=description)(fn)
        _TASKS[name] = Task(task).value
        return fn

    return decorator


def model_task(name: str) -> str:
    MODELS.get(name)
    return _TASKS[name]
