"""``tf.distribute`` strategies by name, so users who outgrow one machine use TensorFlow's engine.

``MultiWorkerMirroredStrategy`` must exist before TensorFlow runs its first op (it configures the
collective ops of the process's runtime), so :func:`kseg.training.train` builds the strategy first
of all, and a process builds it once (:func:`make_strategy` returns the same object again).
"""

from __future__ import annotations

from kseg._keras import tf
from kseg.config import Strategy
from kseg.errors import ConfigError
from kseg.training.cluster import ClusterRole, role_from_env

_multi_worker: tf.distribute.Strategy | None = None
#: gradients are all-reduced in packs of up to this size (one collective per pack instead of one
#: per variable: the per-collective round trip dominates for small segmentation models)
PACK_BYTES = 32 * 1024 * 1024


def make_strategy(name: Strategy | str) -> tf.distribute.Strategy:
    """Build the strategy named in ``train.strategy``.

    - ``default``: the current (single-device) strategy.
    - ``mirrored``: synchronous data parallelism over all GPUs, or over all logical CPU devices when
      there is no GPU (useful for tests: split the CPU with
      ``tf.config.set_logical_device_configuration`` before TensorFlow starts).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` variable
      (every GPU of each machine, else its CPU). Built once per process, before any op.

    Raises:
        ConfigError: ``multi_worker`` without a valid ``TF_CONFIG``, or after TensorFlow already
            ran ops in this process.
    """
    global _multi_worker
    name = Strategy(name)
    if name is Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if name is Strategy.MIRRORED:
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL is GPU-only; on CPUs reduce through one device.
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if cluster_role() is None:
        raise ConfigError(
            "train.strategy = multi_worker needs the TF_CONFIG environment variable "
            '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}) '
            "or kseg train --cluster FILE --worker-index N"
        )
    if _multi_worker is None:
        try:
            _multi_worker = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(
                    bytes_per_pack=PACK_BYTES
                )
            )
        except RuntimeError as exc:
            if "program startup" not in str(exc):
                raise
            raise ConfigError(
                "train.strategy = multi_worker must be set up before TensorFlow runs any op in "
                "the process; start it with `kseg train`, or call kseg.training.train before "
                "anything else that uses TensorFlow"
            ) from None
    return _multi_worker


def cluster_role(name: Strategy | str = Strategy.MULTI_WORKER) -> ClusterRole | None:
    """This process's role for ``train.strategy = name`` (``None`` unless multi_worker with
    ``TF_CONFIG`` set)."""
    if Strategy(name) is not Strategy.MULTI_WORKER:
        return None
    return role_from_env()


def all_workers_max(strategy: tf.distribute.Strategy, value: float) -> float:
    """The largest of every worker's ``value`` (a collective: every worker must call it in turn).

    With one worker it is ``value``; used to agree on a decision each worker made from its own
    data (``data.channels: auto`` on a shard).
    """
    if strategy.num_replicas_in_sync == 1:
        return float(value)
    local = tf.constant([float(value)])

    @tf.function  # eager collectives work too, with a warning about their overhead
    def gather():
        return strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0)

    return float(tf.reduce_max(gather()))
