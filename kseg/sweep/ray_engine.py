"""``kseg sweep --engine ray``: every unfinished cell is one Ray task (imported only for this engine).

The driver (the ``kseg sweep`` process) makes the split and the plan as the local runner does,
submits one task per cell with the cell's CPUs and GPUs declared
(:meth:`~kseg.sweep.engines.CellResources.task_options`), waits for them and writes the same
results. A task runs :func:`kseg.sweep.cell.train` in a Ray worker process, in the driver's
working directory (relative ``--data`` paths mean the same there), with TensorFlow limited to the
cell's CPUs. When a worker process or its node dies, Ray starts the task again (up to ``retries``
times) and the cell continues from its last completed epoch, as a killed local sweep does.

Cells write their run directories themselves, so on a cluster of several machines the sweep folder
(and the data) must be on a filesystem every node mounts at the same path; a worker that cannot see
it stops the cell with one line saying so. Every node needs kseg (same version) and Ray installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kseg import errors
from kseg.atomic import write_json
from kseg.errors import ConfigError, DataError, KsegError
from kseg.sweep.engines import CellJob, CellResources

RAY_HINT = "--engine ray needs Ray: pip install 'kseg[ray]'"


def import_ray():
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    return ray


def run_cells(
    jobs: Sequence[CellJob],
    resources: CellResources,
    *,
    log: Callable[[str], None] = print,
    record: Path | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` as Ray tasks and wait for all of them; returns one timing record per cell.

    Connects to ``resources.address`` (or ``RAY_ADDRESS``, or starts Ray on this machine) unless
    Ray is already initialised in this process, and disconnects only from a connection it made.
    A cell that fails does not stop the others; once all have ended, the first failure is raised
    (a :class:`~kseg.errors.KsegError` from a cell keeps its one line). ``record`` (JSON) gets the
    cluster, the resources and each task's times.
    """
    ray = import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        _connect(ray, resources.address)
    try:
        cluster = _check_fits(ray, resources)
        # declared on the function, not per call: Ray then also gives a GPU cell a fresh worker
        # (max_calls=1), so the GPU memory TensorFlow holds is freed when the cell ends
        task = ray.remote(**resources.task_options())(cell_task)
        cwd = str(Path.cwd())
        submitted: dict[Any, tuple[CellJob, float]] = {}
        for job in jobs:
            ref = task.options(name=f"kseg-sweep:{job.cell.name}").remote(
                job, resources.threads(), cwd
            )
            submitted[ref] = (job, time.time())
        log(
            f"submitted {len(jobs)} cells to Ray ({cluster['CPU']:g} CPUs, {cluster['GPU']:g} "
            f"GPUs on {cluster['nodes']} node(s); per cell {resources.cpus:g} CPU, "
            f"{resources.gpus:g} GPU, up to {resources.retries} retries)"
        )
        pending, failures, timings = list(submitted), [], []
        while pending:
            (ref,), pending = ray.wait(pending, num_returns=1)
            job, sent = submitted[ref]
            n = len(submitted) - len(pending)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # a bug in the cell: its own traceback
                failures.append(e)
                log(f"[{n}/{len(jobs)}] {job.cell.name} failed: {type(e.cause).__name__}")
                continue
            except ray.exceptions.RayError as e:  # worker or node lost more often than retried
                failures.append(
                    KsegError(
                        f"{job.cell.name}: its Ray worker was lost {resources.retries + 1} times "
                        f"({type(e).__name__}); run the same command again to continue the cell "
                        "from its last completed epoch"
                    )
                )
                log(f"[{n}/{len(jobs)}] {job.cell.name} lost: {type(e).__name__}")
                continue
            if "error" in info:
                failures.append(_user_error(info["error"], info["message"]))
                log(f"[{n}/{len(jobs)}] {job.cell.name} failed: {info['message']}")
                continue
            info = {"cell": job.cell.name, "submitted": sent, "collected": time.time(), **info}
            timings.append(info)
            log(
                f"[{n}/{len(jobs)}] {job.cell.name} done on {info['host']} "
                f"(attempt {info['attempt']}, {info['finished'] - info['started']:.0f} s)"
            )
        if record is not None:
            write_json(
                record,
                {
                    "engine": "ray",
                    "ray": ray.__version__,
                    "cluster": cluster,
                    "resources": {
                        "cpus": resources.cpus,
                        "gpus": resources.gpus,
                        "retries": resources.retries,
                    },
                    "tasks": timings,
                },
            )
        if failures:
            raise failures[0]
        return timings
    finally:
        if connected_here:
            ray.shutdown()


def _user_error(name: str, message: str) -> KsegError:
    """The cell's error again in the driver: same class when kseg.errors has it."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, KsegError)):
        cls = KsegError
    return cls(message)


def _connect(ray, address: str | None) -> None:
    import logging

    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError) as e:
        where = address or os.environ["RAY_ADDRESS"]
        raise ConfigError(
            f"--address {where}: no Ray cluster answers there ({str(e).splitlines()[0]}); start "
            "one with `ray start --head` (a cluster with token authentication also needs "
            "RAY_AUTH_MODE=token here) or leave --address out to start Ray on this machine"
        ) from None


def _check_fits(ray, resources: CellResources) -> dict[str, Any]:
    """The cluster's resources; a cell that no node can hold is an error, not a wait forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    if not any(
        r.get("CPU", 0) >= resources.cpus and r.get("GPU", 0) >= resources.gpus for r in nodes
    ):
        raise ConfigError(
            f"no node of the Ray cluster has {resources.cpus:g} CPUs and {resources.gpus:g} GPUs "
            f"for one cell (largest node: {largest.get('CPU', 0):g} CPUs, "
            f"{largest.get('GPU', 0):g} GPUs); lower --cpus-per-cell / --gpus-per-cell"
        )
    return {
        "nodes": len(nodes),
        "CPU": sum(r.get("CPU", 0) for r in nodes),
        "GPU": sum(r.get("GPU", 0) for r in nodes),
    }


def cell_task(job: CellJob, threads: int, cwd: str) -> dict[str, Any]:
    """The Ray task: train one cell in this worker; returns where and when, or a user error."""
    entered = time.time()
    host = socket.gethostname()
    if not job.split.is_file():
        return {
            "error": DataError.__name__,
            "message": f"{job.cell.name}: the Ray worker on {host} cannot see the sweep folder "
            f"{job.split.parent}; on a cluster of several machines --out and --data must be on a "
            "filesystem every node mounts at the same path",
        }
    _limit_threads(threads)
    from kseg.sweep import cell as one_cell

    started: dict[str, Any] = {}

    def on_start(cell: Path, attempt: int) -> None:
        started.update(attempt=attempt, started=time.time())
        write_json(
            cell / one_cell.ENGINE_FILE,
            {"engine": "ray", "host": host, "pid": os.getpid(), "attempt": attempt,
             "node": _node_id()},
        )  # fmt: skip

    try:
        with _working_dir(cwd):
            one_cell.train(
                job.base, job.cell, job.split, job.model, job.loss, job.seed, job.plan,
                on_start=on_start,
            )  # fmt: skip
    except KsegError as e:
        return {"error": type(e).__name__, "message": str(e)}
    cell = json.loads((job.cell / one_cell.CELL_FILE).read_text(encoding="utf-8"))
    return {
        "host": host,
        "pid": os.getpid(),
        "attempt": cell["attempts"],
        "entered": entered,
        "started": started["started"],
        "finished": time.time(),
        "cell_seconds": cell["cell_seconds"],
    }


def _limit_threads(threads: int) -> None:
    """TensorFlow uses the cell's CPUs, not every core of the node (first cell of a worker)."""
    from kseg._keras import tf

    with contextlib.suppress(RuntimeError):  # a reused worker: set by its first cell already
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _node_id() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (tests call cell_task directly)
        return None


@contextlib.contextmanager
def _working_dir(path: str) -> Iterator[None]:
    before = os.getcwd()
    if os.path.isdir(path):
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
