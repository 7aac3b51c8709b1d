"""A small name -> factory registry with errors that list the valid names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from kseg.errors import ConfigError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Maps names to factories (functions or classes).

    Args:
        kind: what the registry holds ("model", "loss", ...), used in error messages.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("unet", description="classic U-Net")
        ... def build_unet(**kw): ...
        >>> MODELS.get("unet")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, *, description: str = "") -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            doc = (obj.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc[0] if doc else "")
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        valid = ", ".join(self.names())
        return f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; valid: {valid}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def description(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
