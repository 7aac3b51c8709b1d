"""An object's attributes as a dict, the names given once.

The Keras ``get_config`` of kseg's losses and metrics and the ``to_dict`` of its result classes
(device profiles, threshold choices, plans, QAT reports) are :func:`attrs_dict` over a declared
tuple of names (or the constructor's parameters, :func:`init_arg_names`), so each class lists its
attributes once. Pure standard library, at the bottom of the layering: ``kseg.bench`` and
``kseg.inference`` use it without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any


def attrs_dict(obj: object, names: Iterable[str]) -> dict[str, Any]:
    """``{name: obj.name}`` in the order of ``names``.

    A tuple or list value comes back as a new list and a dict as a new dict (shallow copies), so
    the result is ready for JSON or YAML and changing it leaves ``obj`` alone.

    Example:
        >>> attrs_dict(ThresholdChoice(threshold=0.45, grid=(0.4, 0.45), ...), ("threshold", "grid"))
        {'threshold': 0.45, 'grid': [0.4, 0.45]}
    """
    return {name: _copy(getattr(obj, name)) for name in names}


def dataclass_dict(
    obj: object, *, first: Iterable[str] = (), exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """:func:`attrs_dict` of a dataclass's fields in their declared order, the attributes named
    in ``first`` (properties too) before them and those in ``exclude`` left out.

    Unlike :func:`dataclasses.asdict` it does not recurse and gives tuples as lists.

    Example:
        >>> dataclass_dict(report, first=("scheme", "fully_quantized"))
        {'scheme': 'default', 'fully_quantized': True, 'default': [...], ...}
    """
    first = tuple(first)
    skip = set(first) | set(exclude)
    rest = (f.name for f in dataclasses.fields(obj) if f.name not in skip)  # type: ignore[arg-type]
    return attrs_dict(obj, (*first, *rest))


def _copy(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def init_arg_names(cls: type) -> list[str]:
    """The named parameters of ``cls.__init__`` in order (no ``self``, ``*args``, ``**kwargs``):
    the keys of a Keras ``get_config`` whose class stores each argument under its own name."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


__all__ = ["attrs_dict", "dataclass_dict", "init_arg_names"]
