"""The model registry and the decorator architectures register with.

Kept apart from ``kseg/models/__init__.py`` so architecture modules can import it without a cycle.
The architecture modules import TensorFlow, and ``kseg.cli`` imports ``kseg.models`` at start-up
(which must not), so the registry imports them the first time it is asked for a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from kseg.config import Task
from kseg.registry import Registry

#: Modules whose import registers architectures.
ARCHITECTURE_MODULES = (
    "kseg.models.unet",
    "kseg.models.unet_pp",
    "kseg.models.segnet",
    "kseg.models.mobile_unet",
    "kseg.models.denoising_ae",
)


class _ZooRegistry(Registry):
    """A :class:`~kseg.registry.Registry` that imports the architecture modules on first use."""

    def __init__(self, kind: str, modules: tuple[str, ...]) -> None:
        super().__init__(kind)
        self._modules = modules
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def get(self, name: str):
        self._load()
        return super().get(name)

    def names(self) -> list[str]:
        self._load()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._load()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()


#: name -> builder ``fn(x, **options) -> features`` (a tensor, or a list for deep supervision)
MODELS: Registry[Callable[..., Any]] = _ZooRegistry("model", ARCHITECTURE_MODULES)

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
