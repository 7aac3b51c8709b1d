"""Measure a ``.tflite`` on this machine: init, first inference, latency distribution, memory.

Each measurement can run in a fresh Python process (``isolate=True``), so that the peak resident
memory belongs to one model alone and CPU pinning does not leak into the caller. The machine's
INT8 peak is calibrated with a large INT8 convolution written by :mod:`kseg.bench.builder`
(no TensorFlow, no binary asset), measured with the same threads and pinning.

Example:
    >>> r = measure("unet_int8.tflite", threads=1, runs=50, warmup=5, cpus=[0])
    >>> r["latency_ms"]["p50"], r["peak_rss_mb"]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, ModelError


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # a device without psutil: /proc, else the running peak
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return _max_rss_mb()


def _max_rss_mb() -> float:
    """Peak resident memory of this process since it started (exec), in MiB.

    Linux: ``VmHWM`` from ``/proc/self/status``, which starts afresh at ``exec``; ``ru_maxrss``
    would carry over the parent's peak from ``fork``. Elsewhere: ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 if sys.platform != "darwin" else kb / 2**20
    except ImportError:
        return float("nan")


@contextmanager
def pinned(cpus: list[int] | None):
    """Restrict this process to ``cpus`` (Linux ``sched_setaffinity``) for the block."""
    if not cpus:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("--cpus needs Linux (os.sched_setaffinity); omit it on this system")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as e:
        raise ConfigError(f"cannot pin to CPUs {cpus} ({e}); available: {sorted(before)}") from None
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def timed_invokes(model: Any, x: np.ndarray, runs: int) -> list[float]:
    """Milliseconds of ``runs`` round trips: set the quantized input, ``invoke()``, read the output
    (for an ``.onnx``: one ``session.run`` with the input fed and the output fetched)."""
    clock = time.perf_counter
    times = []
    if hasattr(model, "session"):  # kseg.runtime.ONNXModel
        run, out_names, feed = model.session.run, [model._out.name], {model._in.name: x}
        for _ in range(runs):
            t0 = clock()
            run(out_names, feed)
            times.append(1e3 * (clock() - t0))
        return times
    interp, idx_in, idx_out = model.interpreter, model._in["index"], model._out["index"]
    for _ in range(runs):
        t0 = clock()
        interp.set_tensor(idx_in, x)
        interp.invoke()
        interp.get_tensor(idx_out)
        times.append(1e3 * (clock() - t0))
    return times


def measure(
    path: str | os.PathLike[str],
    *,
    threads: int | None = 1,
    runs: int = 50,
    warmup: int = 5,
    runtime: str = "auto",
    delegate: str | None = None,
    cpus: list[int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure one model (``.tflite``, or ``.onnx`` on ONNX Runtime) in this process; see
    :func:`measure_isolated` for a fresh process.

    The timed call is the interpreter round trip a runner makes for every image: copy the
    already-quantized input in, ``invoke()``, copy the output out.
    """
    from kseg.runtime import open_model

    if runs < 1 or warmup < 0:
        raise ConfigError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    with pinned(cpus):
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        model = open_model(path, runtime=runtime, num_threads=threads, delegate=delegate)
        init_ms = 1e3 * (time.perf_counter() - t0)
        rss_init = _rss_mb()
        rng = np.random.default_rng(seed)
        shape = (1, model.input_size, model.input_size, model.channels)
        x = model.preprocess(rng.uniform(0, 255, shape).astype(np.float32))
        t0 = time.perf_counter()
        model.invoke_raw(x)
        first_ms = 1e3 * (time.perf_counter() - t0)
        for _ in range(warmup):
            model.invoke_raw(x)
        times = timed_invokes(model, x, runs)
        rss_end = _rss_mb()
        peak = max(rss_init, rss_end)  # sampled; the isolated worker uses its ru_maxrss
        desc = model.describe()
    stats = percentiles(times)
    return {
        "file": str(Path(path)),
        "backend": desc["backend"],
        "backend_version": desc["backend_version"],
        "delegate": desc["delegate"],
        "threads": threads,
        "cpus": cpus,
        "runs": runs,
        "warmup": warmup,
        "size_bytes": Path(path).stat().st_size,
        "input_shape": desc["input_shape"],
        "input_dtype": desc["input_dtype"],
        "init_ms": init_ms,
        "first_ms": first_ms,
        "latency_ms": stats,
        "runs_ms": times,
        "throughput_ips": 1e3 / stats["mean"],
        "baseline_rss_mb": rss0,
        "peak_rss_mb": peak,
        "model_rss_mb": peak - rss0,
    }


def measure_isolated(path: str | os.PathLike[str], **kw: Any) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process; peak RSS is that process's own peak."""
    args = {"path": str(path), **kw}
    proc = subprocess.run(
        [sys.executable, "-m", "kseg.bench._worker", json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        if err:
            raise ModelError(err[-1][len("error: ") :])
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"{path}: benchmark process failed ({tail})")
    return json.loads(lines[-1])


_CALIBRATION: dict[tuple[Any, ...], dict[str, Any]] = {}


def calibrate_peak(
    *,
    threads: int | None = 1,
    runtime: str = "auto",
    cpus: list[int] | None = None,
    runs: int = 10,
    isolate: bool = False,
    dtype: str = "int8",
) -> dict[str, Any]:
    """This machine's measured throughput: two 3x3 convs, 64x64x64 -> 64 channels, in ``dtype``.

    Returns ``{"gmacs_per_s", "macs", "latency_ms_min", "threads"}``; cached per settings.
    """
    key = (threads, runtime, tuple(cpus or ()), isolate, dtype)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    from kseg.bench.builder import conv_model

    size, channels, layers = 64, 64, 2
    macs = layers * size * size * channels * channels * 9
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"calibration_{dtype}_conv.tflite"
        path.write_bytes(conv_model(size, channels, layers, dtype=dtype))
        fn = measure_isolated if isolate else measure
        r = fn(path, threads=threads, runs=runs, warmup=2, runtime=runtime, cpus=cpus)
    best = r["latency_ms"]["min"]
    out = {
        "gmacs_per_s": macs / (best * 1e-3) / 1e9,
        "macs": macs,
        "latency_ms_min": best,
        "threads": threads,
        "model": f"{layers} x CONV_2D 3x3 {dtype}, {size}x{size}x{channels} -> {channels}",
    }
    _CALIBRATION[key] = out
    return out


def machine_info() -> dict[str, Any]:
    """Architecture, CPU model and core count of this machine."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "system": platform.system(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
