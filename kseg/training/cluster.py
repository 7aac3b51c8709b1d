"""Who this process is in a multi-worker training job, read from ``TF_CONFIG`` (no TensorFlow here).

``train.strategy: multi_worker`` runs the same ``kseg train`` command on every machine of a
cluster; TensorFlow's ``TF_CONFIG`` variable says where the machines are and which one this is.
``kseg train --cluster FILE --worker-index N`` writes that variable from a small file that lists
the machines once, so every machine gets the same file and only its index differs.

The chief is the task of type ``chief`` if the cluster has one, else worker 0. Only the chief
writes the run directory; the other workers write to a private temporary folder that is removed
when they finish (:mod:`kseg.training.loop`).

Example:
    >>> role = parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, '
    ...                        '"task": {"type": "worker", "index": 1}}')
    >>> role.num_workers, role.worker_index, role.is_chief
    (2, 1, False)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kseg.errors import ConfigError

#: the task types that train (``ps`` and ``evaluator`` belong to other strategies)
_TRAINING_TYPES = ("chief", "worker")
_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster.

    Args:
        chief: address of the ``chief`` task, if the cluster names one.
        workers: addresses of the ``worker`` tasks, in order.
        task_type: ``chief`` or ``worker``.
        task_index: index within ``task_type``.
    """

    chief: str | None
    workers: tuple[str, ...]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        """Processes that train (the chief counts as one)."""
        return len(self.workers) + (self.chief is not None)

    @property
    def worker_index(self) -> int:
        """0 for the chief, then 1, 2, ...: the index of this process's data shard."""
        if self.task_type == "chief":
            return 0
        return self.task_index + (self.chief is not None)

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    def describe(self) -> str:
        who = "chief" if self.is_chief else "worker"
        return f"{who} (task {self.task_type} {self.task_index}, {self.worker_index + 1} of {self.num_workers})"


def parse_tf_config(raw: str, *, source: str = "TF_CONFIG") -> ClusterRole:
    """Check a ``TF_CONFIG`` JSON string and return this process's role.

    Raises:
        ConfigError: one line naming what is wrong (bad JSON, no workers, task missing or out of
            range, a port missing) and showing a valid value.
    """
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON ({exc.msg} at character {exc.pos}); use e.g. {_EXAMPLE}"
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ConfigError(f'{source} has no "cluster" object; use e.g. {_EXAMPLE}')
    cluster: dict[str, Any] = spec["cluster"]
    other = sorted(set(cluster) - set(_TRAINING_TYPES))
    if other:
        raise ConfigError(
            f"{source} cluster has {', '.join(other)} tasks; train.strategy = multi_worker uses only "
            '"chief" and "worker" (MultiWorkerMirroredStrategy); remove the others'
        )
    chiefs = _addresses(cluster.get("chief", []), f'{source} cluster "chief"')
    workers = _addresses(cluster.get("worker", []), f'{source} cluster "worker"')
    if len(chiefs) > 1:
        raise ConfigError(f'{source} lists {len(chiefs)} "chief" tasks; a cluster has at most one')
    if not chiefs and not workers:
        raise ConfigError(f'{source} cluster lists no "worker" addresses; use e.g. {_EXAMPLE}')
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            f'{source} has no "task" with "type" and "index" (which machine is this?); '
            'add e.g. "task": {"type": "worker", "index": 0}'
        )
    task_type, index = task["type"], task["index"]
    if task_type not in _TRAINING_TYPES:
        raise ConfigError(f'{source} task type {task_type!r}: use "worker" (or "chief")')
    members = chiefs if task_type == "chief" else workers
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members):
        raise ConfigError(
            f"{source} task index {index!r} is not a {task_type} of the cluster "
            f"({len(members)} listed); use 0..{max(len(members) - 1, 0)}"
        )
    return ClusterRole(chiefs[0] if chiefs else None, tuple(workers), task_type, index)


def _addresses(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ConfigError(f'{where} must be a list of "host:port" strings')
    for address in value:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f'{where}: {address!r} is not "host:port" (e.g. "10.0.0.2:12345")')
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists an address twice; every task needs its own host:port")
    return value


def role_from_env(environ: Mapping[str, str] | None = None) -> ClusterRole | None:
    """The role described by ``TF_CONFIG``, or ``None`` when the variable is unset or empty."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    return parse_tf_config(raw) if raw else None


def tf_config_from_file(path: str | Path, index: int) -> str:
    """``TF_CONFIG`` for worker ``index`` of the cluster listed in ``path``.

    The file (YAML or JSON) lists the machines once, the same file on every machine::

        workers:
          - 10.0.0.1:12345   # worker 0 is the chief: it writes the run directory
          - 10.0.0.2:12345

    Raises:
        ConfigError: unreadable file, no ``workers`` list, or ``index`` out of range.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--cluster {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError:
        raise ConfigError(
            f"--cluster {path}: not YAML/JSON; write 'workers: [host1:port, host2:port]'"
        ) from None
    workers = doc.get("workers") if isinstance(doc, dict) else None
    if not isinstance(workers, list) or not workers:
        raise ConfigError(
            f"--cluster {path}: no 'workers' list; write 'workers: [host1:port, host2:port]' "
            "(worker 0 is the chief)"
        )
    workers = _addresses([str(w) for w in workers], f"--cluster {path} workers")
    if not 0 <= index < len(workers):
        raise ConfigError(
            f"--worker-index {index}: the cluster in {path} has {len(workers)} workers; "
            f"use 0..{len(workers) - 1} (0 is the chief)"
        )
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def local_addresses(n: int) -> list[str]:
    """``n`` addresses ``127.0.0.1:PORT`` on ports free on this machine now: a cluster of worker
    processes on one machine, to try ``multi_worker`` before going to several (tests, benchmarks).

    A port is free when asked; another program may take it before the workers start.
    """
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


__all__ = [
    "ClusterRole",
    "local_addresses",
    "parse_tf_config",
    "role_from_env",
    "tf_config_from_file",
]
