"""The model behind the service: loaded once, one predictor (interpreter) per worker thread.

A TFLite interpreter is not safe to call from two threads at once, so each of the ``workers``
threads of the service's pool owns one: the predictor loaded at start-up (which also checks the
model before the port opens) goes to the first thread, the others load their own on first use.
A Keras model is one object shared by the threads (its inference is re-entrant).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
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
        from kseg.inference.classes import predictor_class_names

        #: class names by class id, background first (run config, card or defaults), read once
        self.class_names: tuple[str, ...] = predictor_class_names(first)
        self._spare = [first]
        self._lock = threading.Lock()
        self._local = threading.local()
        self.loaded = 1
        self.in_flight = 0  #: segment requests admitted and not yet answered
        self.refused = 0  #: requests answered 503 because every worker and queue place was taken
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="kseg-serve")

    @property
    def capacity(self) -> int:
        """Requests in flight at most: one per worker plus ``max_queue`` waiting."""
        return self.settings.workers + self.settings.max_queue

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one request, or refuse it with 503 when all are taken.

        Entered on the event loop (one thread), so the count needs no lock.
        """
        from kseg.serve.limits import UploadError

        if self.in_flight >= self.capacity:
            self.refused += 1
            raise UploadError(
                f"busy: {self.in_flight} requests in progress ({self.settings.workers} worker(s), "
                f"{self.settings.max_queue} queued); retry shortly",
                status=503,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

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
        """What ``GET /v1/model`` answers: the model card plus the facts the service relies on,
        with ``classes``: id, name and overlay colour of each foreground class (the page's legend)."""
        from kseg.inference.classes import class_legend

        ref = self.reference
        info: dict[str, Any] = {
            "name": self.path.name if self.path else type(ref).__name__,
            "kind": (self.path.suffix.lstrip(".") if self.path else "predictor"),
            "input_size": int(ref.input_size),
            "channels": int(ref.channels),
            "num_classes": int(getattr(ref, "num_classes", 1)),
            "threshold": float(getattr(ref, "threshold", 0.5)),
            "resize_mode": str(getattr(ref, "resize_mode", "stretch")),
            "class_names": list(self.class_names),
            "classes": class_legend(self.class_names),
            "workers": self.settings.workers,
            "card": getattr(ref, "card", None),
        }
        backend = getattr(ref, "backend", None)
        if backend:
            info["backend"] = backend
        return info

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
