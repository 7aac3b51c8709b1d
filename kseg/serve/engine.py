"""The model behind the service: loaded once, one predictor (interpreter) per worker thread.

A TFLite interpreter is not safe to call from two threads at once, so each of the ``workers``
threads of the service's pool owns one: the predictor loaded at start-up (which also checks the
model before the port opens) goes to the first thread, the others load their own on first use.
A Keras model is one object shared by the threads (its inference is re-entrant).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kseg.serve.settings import ServeSettings

T = TypeVar("T")


class Engine:
    """Predictors for the service's worker threads.

    Args:
        model: a model path (``.tflite``, ``.keras``, ``.h5``) or an already loaded predictor
            (then shared by every thread; give ``workers=1`` for a TFLite one).
        settings: the service settings (``workers``, ``num_threads``, ``runtime``).
    """

    def __init__(self, model: Any, settings: ServeSettings) -> None:
        from kseg.inference import load_predictor

        self.settings = settings
        if isinstance(model, (str, Path)):
            self.path: Path | None = Path(model)
            self._load: Callable[[], Any] | None = lambda: load_predictor(
                self.path, runtime=settings.runtime, num_threads=settings.num_threads
            )
            first = self._load()
            if self.path.suffix != ".tflite":  # Keras: one model shared by the threads
                self._load = None
        else:
            self.path, self._load, first = None, None, model
        self.reference = first
        self._spare = [first]
        self._lock = threading.Lock()
        self._local = threading.local()
        self.loaded = 1
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="kseg-serve")

    def predictor(self) -> Any:
        """This thread's predictor (loaded on the thread's first request)."""
        pred = getattr(self._local, "predictor", None)
        if pred is None:
            with self._lock:
                if self._spare:
                    pred = self._spare.pop()
                elif self._load is None:
                    pred = self.reference
                else:
                    pred = self._load()
                    self.loaded += 1
            self._local.predictor = pred
        return pred

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(predictor, *args)`` on a worker thread, awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(self.predictor(), *args))

    def card(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers: the model card plus the facts the service relies on."""
        ref = self.reference
        info: dict[str, Any] = {
            "name": self.path.name if self.path else type(ref).__name__,
            "kind": (self.path.suffix.lstrip(".") if self.path else "predictor"),
            "input_size": int(ref.input_size),
            "channels": int(ref.channels),
            "num_classes": int(getattr(ref, "num_classes", 1)),
            "threshold": float(getattr(ref, "threshold", 0.5)),
            "resize_mode": str(getattr(ref, "resize_mode", "stretch")),
            "workers": self.settings.workers,
            "card": getattr(ref, "card", None),
        }
        backend = getattr(ref, "backend", None)
        if backend:
            info["backend"] = backend
        return info

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
