"""The model registry and the decorator architectures register with.

Kept apart from ``kseg/models/__init__.py`` so architecture modules can import it without a cycle.
The architecture modules import TensorFlow, and ``kseg.cli`` imports ``kseg.models`` at start-up
(which must not), so the registry imports them the first time it is asked for a name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
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


def register_model(
    name: str,
    *,
    task: Task = Task.SEGMENT,
    description: str = "",
    options: Mapping[str, Any] | None = None,
):
    """Register an architecture builder.

    The builder takes the normalized input tensor and keyword-only options (their defaults are the
    model's defaults) and returns the feature tensor the shared head turns into the output.
    ``task="denoise"`` gets the image head (denoised pixels) instead of the mask head.

    With ``options`` (name -> default) the options are declared there instead of in the builder's
    signature: the builder is written as ``fn(x, style, **rest)`` and registered behind a function
    whose signature has exactly these keyword-only options (what ``kseg models info`` and
    :func:`~kseg.models.options.validate_options` read), which turns ``norm``, ``groups`` and
    ``activation`` into one :class:`~kseg.models.blocks.Style` and passes the rest by name. The
    registered function is returned.

    Example:
        >>> @register_model("tiny", description="...", options={**ENCODER_DECODER, "depth": 2})
        ... def tiny(x, style, *, depth, filters, upsampling, dropout): ...
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        builder = fn if options is None else _with_style(fn, name, dict(options))
        MODELS.register(name, description=description)(builder)
        _TASKS[name] = Task(task).value
        return builder

    return decorator


def _with_style(fn: Callable[..., Any], name: str, defaults: dict[str, Any]) -> Callable[..., Any]:
    """``fn(x, style, **rest)`` behind the signature ``(x, *, **defaults)`` (see register_model)."""
    signature = inspect.Signature(
        [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in defaults.items()
        ]
    )

    def builder(x, **opts):
        from kseg.models.blocks import Style

        rest = {**defaults, **opts}
        style = Style(
            norm=rest.pop("norm"), groups=rest.pop("groups"), activation=rest.pop("activation")
        )
        return fn(x, style, **rest)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = fn.__doc__
    builder.__signature__ = signature  # type: ignore[attr-defined]
    return builder


def model_task(name: str) -> str:
    MODELS.get(name)
    return _TASKS[name]
