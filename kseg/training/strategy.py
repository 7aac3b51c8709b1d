"""``tf.distribute`` strategies by name, so users who outgrow one machine use TensorFlow's engine."""

from __future__ import annotations

import json
import os

from kseg._keras import tf
from kseg.config import Strategy
from kseg.errors import ConfigError


def make_strategy(name: Strategy | str) -> tf.distribute.Strategy:
    """Build the strategy named in ``train.strategy``.

    - ``default``: the current (single-device) strategy.
    - ``mirrored``: synchronous data parallelism over all GPUs, or over all logical CPU devices when
      there is no GPU (useful for tests: split the CPU with
      ``tf.config.set_logical_device_configuration`` before TensorFlow starts).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` variable.
    """
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
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "train.strategy = multi_worker needs the TF_CONFIG environment variable "
            '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}})'
        )
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(
            "TF_CONFIG is not valid JSON; see the tf.distribute multi-worker guide"
        ) from None
    return tf.distribute.MultiWorkerMirroredStrategy()
