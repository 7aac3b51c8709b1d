"""Find and load a TFLite interpreter: LiteRT, tflite-runtime or (only on request) ``tf.lite``.

The three packages expose the same ``Interpreter`` class (the LiteRT one is the successor of the
other two), so the rest of :mod:`kseg.runtime` talks to one API. TensorFlow is imported only when
``runtime="tf"`` is asked for, or when neither LiteRT nor tflite-runtime is installed, so that a
device with only numpy and an interpreter package never needs it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kseg.config import StrEnum
from kseg.errors import ConfigError, ModelError


class Runtime(StrEnum):
    """Interpreter packages, in the order ``auto`` tries them."""

    AUTO = "auto"  #: first of litert, tflite_runtime, tf that imports
    LITERT = "litert"  #: ``ai_edge_litert.interpreter`` (maintained)
    TFLITE_RUNTIME = "tflite_runtime"  #: ``tflite_runtime.interpreter`` (frozen at 2.14)
    TF = "tf"  #: ``tensorflow.lite`` (heavy; fallback only)


_AUTO_ORDER = (Runtime.LITERT, Runtime.TFLITE_RUNTIME, Runtime.TF)


@dataclass(frozen=True)
class Backend:
    """An interpreter package: its name, ``Interpreter`` class and module (for delegates)."""

    name: str
    interpreter_cls: Any
    module: Any
    version: str

    def op_resolver(self, name: str) -> Any:
        """``OpResolverType.<name>`` of this package, or None where the package has none."""
        enum = getattr(self.module, "OpResolverType", None)
        return getattr(enum, name, None) if enum is not None else None


def _import(runtime: Runtime) -> Backend:
    if runtime is Runtime.LITERT:
        mod = importlib.import_module("ai_edge_litert.interpreter")
        version = _dist_version("ai-edge-litert")
    elif runtime is Runtime.TFLITE_RUNTIME:
        mod = importlib.import_module("tflite_runtime.interpreter")
        version = _dist_version("tflite-runtime")
    else:
        # Only here: the user asked for tf.lite, or nothing lighter exists. Go through kseg._keras
        # so that TF_USE_LEGACY_KERAS is set before TensorFlow is first imported in this process.
        from kseg._keras import tf

        mod = tf.lite
        version = tf.__version__
        return Backend(runtime.value, mod.Interpreter, mod.experimental, version)
    return Backend(runtime.value, mod.Interpreter, mod, version)


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def available_runtimes() -> list[str]:
    """Names of the interpreter packages importable here, without importing TensorFlow."""
    found = []
    for name, module in (("litert", "ai_edge_litert"), ("tflite_runtime", "tflite_runtime")):
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    if importlib.util.find_spec("tensorflow") is not None:
        found.append("tf")
    return found


def load_backend(runtime: str | Runtime = Runtime.AUTO) -> Backend:
    """Import the interpreter package named by ``runtime`` (``auto`` picks the lightest present).

    Raises:
        ConfigError: unknown runtime name.
        ModelError: the requested package is not installed (the message says how to install it).
    """
    try:
        rt = Runtime(str(runtime))
    except ValueError:
        raise ConfigError(
            f"unknown runtime {runtime!r}; valid: {', '.join(Runtime.values())}"
        ) from None
    if rt is not Runtime.AUTO:
        try:
            return _import(rt)
        except ImportError as e:
            pkg = {
                "litert": "ai-edge-litert",
                "tflite_runtime": "tflite-runtime",
                "tf": "tensorflow",
            }
            raise ModelError(
                f"runtime {rt.value!r} is not installed ({e}); pip install {pkg[rt.value]} "
                f"or use --runtime auto"
            ) from None
    for candidate in _AUTO_ORDER:
        try:
            return _import(candidate)
        except ImportError:
            continue
    raise ModelError(
        "no TFLite interpreter found; pip install ai-edge-litert (or tflite-runtime on a device)"
    )


class Delegate(StrEnum):
    """Kinds of ``--delegate`` values (``external:PATH.so`` loads a shared library)."""

    NONE = "none"  #: plain builtin kernels, no default delegate
    XNNPACK = "xnnpack"  #: the interpreter's default CPU delegate
    EXTERNAL = "external"  #: ``external:/path/to/delegate.so``


def interpreter_kwargs(backend: Backend, delegate: str | None) -> dict[str, Any]:
    """Keyword arguments for ``Interpreter(...)`` that implement ``delegate``.

    ``None`` and ``"xnnpack"`` keep the interpreter default (XNNPACK on CPU); ``"none"`` selects the
    builtin kernels without default delegates; ``"external:PATH"`` loads the library for real.

    Raises:
        ConfigError: malformed delegate string.
        ModelError: the external delegate library is missing or fails to load.
    """
    if delegate is None or delegate == Delegate.XNNPACK:
        return {}
    if delegate == Delegate.NONE:
        resolver = backend.op_resolver("BUILTIN_WITHOUT_DEFAULT_DELEGATES")
        return {"experimental_op_resolver_type": resolver} if resolver is not None else {}
    kind, _, path = str(delegate).partition(":")
    if kind != Delegate.EXTERNAL or not path:
        raise ConfigError(f"unknown delegate {delegate!r}; valid: none, xnnpack, external:PATH.so")
    return {"experimental_delegates": [load_external_delegate(backend, path)]}


def load_external_delegate(backend: Backend, path: str | os.PathLike[str]) -> Any:
    """Load a TFLite external delegate shared library (EdgeTPU, Hexagon, a vendor NPU, ...)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(
            f"{p}: delegate library not found; pass --delegate external:/path/to/lib.so"
        )
    loader = getattr(backend.module, "load_delegate", None)
    if loader is None:
        raise ModelError(
            f"runtime {backend.name!r} cannot load external delegates; use --runtime litert"
        )
    try:
        return loader(str(p))
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{p}: delegate failed to load ({first})") from None
