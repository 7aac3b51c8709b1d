"""Weight clustering (weight sharing) that keeps pruned zeros: prune -> cluster -> strip -> INT8.

Each clustered kernel is limited to ``n_clusters`` distinct values (centroids learned during a
short fine-tune). The kernel still has its shape and dtype, so the ``.tflite`` is not smaller on
disk, but its int8 weights are drawn from a few symbols and gzip (or any entropy coder of the
download) codes them in fewer bits. With ``preserve_sparsity`` one centroid is fixed at zero and
the zeros of a pruned kernel are masked, so pruning and clustering compose (tfmot's collaborative
optimization): the zeros survive into the INT8 file.

Which layers are clustered:

- the kernels tfmot's clustering registry clusters: ``Conv2D``, ``Conv2DTranspose`` and ``Dense``
  kernels, the pointwise kernel of ``SeparableConv2D``; ``DepthwiseConv2D`` kernels are not
  clustered by tfmot (the registry supports the layer but clusters none of its weights);
- except layers matching a ``dense`` pattern: by default the first convolution (``@first_conv``)
  and the final 1x1 head (``@head``, also ``logits*``), whose few weights carry the most
  information per parameter;
- and except kernels with no more weights than clusters (tfmot would skip them with a warning).

Every layer left unclustered is listed with its reason by :func:`plan_clusters`.

Reference:
    Han, Mao and Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
    Quantization and Huffman Coding", ICLR 2016. TensorFlow Model Optimization, "Collaborative
    optimization" and "Sparsity preserving clustering Keras example"
    (https://www.tensorflow.org/model_optimization/guide/combine/collaborative_optimization).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from kseg._keras import keras
from kseg.config import StrEnum
from kseg.errors import ConfigError, ModelError

_clustering = tfmot.clustering.keras

#: The weights tfmot clusters, by layer class (its ``ClusteringRegistry``); a class with an empty
#: tuple is supported by tfmot but keeps all its weights.
CLUSTERED_WEIGHTS: dict[str, tuple[str, ...]] = {
    "Conv2D": ("kernel",),
    "Conv2DTranspose": ("kernel",),
    "SeparableConv2D": ("pointwise_kernel",),
    "Dense": ("kernel",),
    "DepthwiseConv2D": (),
}
DEFAULT_DENSE: tuple[str, ...] = ("@first_conv", "@head", "logits*")
_WRAPPERS = frozenset(
    {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "PruneLowMagnitude", "ClusterWeights"}
)
MIN_CLUSTERS, MAX_CLUSTERS = 2, 256


class CentroidInit(StrEnum):
    """How the centroids start (tfmot ``CentroidInitialization``)."""

    KMEANS_PLUS_PLUS = "kmeans_plus_plus"  #: k-means++ seeding (tfmot's default)
    DENSITY_BASED = "density_based"  #: spaced by the weights' cumulative distribution
    LINEAR = "linear"  #: evenly spaced between the smallest and largest weight
    RANDOM = "random"  #: uniform between the smallest and largest weight


def check_clusters(n_clusters: Any, *, preserve_sparsity: bool = True) -> int:
    """``n_clusters`` as an int, or a one-line :class:`ConfigError` saying the valid range."""
    low = MIN_CLUSTERS + 1 if preserve_sparsity else MIN_CLUSTERS
    why = " with preserve_sparsity (one centroid is the fixed zero)" if preserve_sparsity else ""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ConfigError(f"clusters = {n_clusters!r} must be a whole number, e.g. 16")
    if not low <= int(n_clusters) <= MAX_CLUSTERS:
        raise ConfigError(
            f"clusters = {n_clusters} must be in [{low}, {MAX_CLUSTERS}]{why}, e.g. 16"
        )
    return int(n_clusters)


def check_init(init: Any) -> CentroidInit:
    try:
        return CentroidInit(str(init).lower())
    except ValueError:
        valid = ", ".join(c.value for c in CentroidInit)
        raise ConfigError(
            f"init = {init!r} is not a centroid initialization; valid: {valid}"
        ) from None


def _clustered_size(layer: keras.layers.Layer) -> int:
    return int(
        sum(np.prod(getattr(layer, w).shape) for w in CLUSTERED_WEIGHTS[type(layer).__name__])
    )


def plan_clusters(
    model: keras.Model, n_clusters: int, *, dense: tuple[str, ...] = DEFAULT_DENSE
) -> tuple[dict[str, int], dict[str, str]]:
    """The number of clusters for every layer with a kernel (0 = left as it is), and the reason
    for each 0.

    ``dense`` holds ``fnmatch`` patterns on layer names; ``@first_conv`` and ``@head`` name the
    first and the last layer with a clusterable kernel.
    """
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )

    layers = [layer for layer in model.layers if type(layer).__name__ in CLUSTERED_WEIGHTS]
    clusterable = [layer.name for layer in layers if CLUSTERED_WEIGHTS[type(layer).__name__]]
    first, head = (clusterable[0], clusterable[-1]) if clusterable else (None, None)
    plan: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for layer in layers:
        name, cls = layer.name, type(layer).__name__
        tokens = {"@first_conv": name == first, "@head": name == head}
        hit = next((p for p in dense if tokens.get(p, False) or fnmatch.fnmatchcase(name, p)), None)
        size = _clustered_size(layer)
        if not CLUSTERED_WEIGHTS[cls]:
            skipped[name] = f"tfmot clusters no weights of {cls}"
        elif hit is not None:
            skipped[name] = f"dense pattern {hit!r}"
        elif not ClusteringRegistry.supports(layer):
            skipped[name] = f"{cls} not supported by tfmot clustering"
        elif size <= n_clusters:
            skipped[name] = f"{size} weights <= {n_clusters} clusters"
        plan[name] = 0 if name in skipped else n_clusters
    return plan, skipped


def cluster_model(
    model: keras.Model,
    n_clusters: int = 16,
    *,
    preserve_sparsity: bool = True,
    dense: tuple[str, ...] = DEFAULT_DENSE,
    init: CentroidInit | str = CentroidInit.KMEANS_PLUS_PLUS,
) -> tuple[keras.Model, dict[str, int]]:
    """Wrap the layers chosen by :func:`plan_clusters` with tfmot clustering wrappers.

    The input model is not changed: each clustered layer is a built copy holding the same weights
    (tfmot seeds the centroids from them), every other layer a fresh copy with its weights set.

    Args:
        n_clusters: distinct values per clustered kernel, in [2, 256] ([3, 256] with
            ``preserve_sparsity``).
        preserve_sparsity: one centroid fixed at zero and the kernel's zeros masked during
            training (use it on a pruned model).
        dense: layer-name patterns left unclustered (see :func:`plan_clusters`).
        init: centroid initialization, a :class:`CentroidInit` value.

    Returns:
        The wrapped model (compile and fine-tune it, then :func:`strip`) and the plan
        ``{layer: clusters, 0 = not clustered}``.

    Example:
        >>> wrapped, plan = cluster_model(pruned, 16)
        >>> wrapped.fit(...); clustered = strip(wrapped)
        >>> cluster_report(clustered, plan)["max_unique"]
        16
    """
    from kseg.optimize.qat import quantize_scope

    n_clusters = check_clusters(n_clusters, preserve_sparsity=preserve_sparsity)
    init_method = _clustering.CentroidInitialization[check_init(init).name]
    dense = (dense,) if isinstance(dense, str) else tuple(dense or ())
    wrapped_layers = [layer.name for layer in model.layers if type(layer).__name__ in _WRAPPERS]
    if wrapped_layers:
        raise ModelError(
            f"model {model.name!r} has tfmot wrappers ({wrapped_layers[0]}, ...); cluster a plain "
            "or stripped pruned model, before qat (prune -> cluster -> qat or convert)"
        )
    plan, skipped = plan_clusters(model, n_clusters, dense=dense)
    if not any(plan.values()):
        raise ConfigError(
            f"no layer of model {model.name!r} to cluster ({len(skipped)} left dense by the "
            f"patterns {list(dense)} or too small); loosen the dense patterns"
        )

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        clone = layer.__class__.from_config(layer.get_config())
        if plan.get(layer.name, 0) <= 0:
            return clone
        # tfmot seeds the centroids from the weights when the wrapper is built, so it needs a
        # built layer; a built copy keeps the input model's layers out of the wrapper.
        clone.build(layer.input_shape)
        clone.set_weights(layer.get_weights())
        return _clustering.cluster_weights(
            clone,
            number_of_clusters=n_clusters,
            cluster_centroids_init=init_method,
            preserve_sparsity=preserve_sparsity,
        )

    with quantize_scope(), _clustering.cluster_scope():
        wrapped = keras.models.clone_model(model, clone_function=wrap)
    for layer in model.layers:
        if plan.get(layer.name, 0) <= 0:
            wrapped.get_layer(layer.name).set_weights(layer.get_weights())
    return wrapped, plan


def strip(model: keras.Model) -> keras.Model:
    """Remove the clustering wrappers; each clustered kernel keeps only its centroid values."""
    from kseg.optimize.qat import quantize_scope

    with quantize_scope():
        return _clustering.strip_clustering(model)


def cluster_report(model: keras.Model, plan: dict[str, int] | None = None) -> dict[str, Any]:
    """Distinct values and sparsity of every layer with a kernel in a stripped model, and overall.

    Per layer: the weights tfmot clusters for its class (for a class it does not cluster, e.g.
    ``DepthwiseConv2D``, all its kernels). ``max_unique`` is the largest number of distinct values
    in a clustered layer; ``sparsity_clustered`` is over the clustered layers, ``sparsity`` over
    every listed kernel.
    """
    plan = plan or {}
    rows = []
    zeros_all = size_all = zeros_cl = size_cl = 0
    max_unique = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in CLUSTERED_WEIGHTS:
            continue
        names = CLUSTERED_WEIGHTS[cls]
        kernels = (
            [getattr(layer, n).numpy() for n in names]
            if names
            else [w.numpy() for w in layer.weights if len(w.shape) >= 2]
        )
        size = int(sum(k.size for k in kernels))
        zeros = int(sum(np.count_nonzero(k == 0) for k in kernels))
        unique = max((len(np.unique(k)) for k in kernels), default=0)
        target = int(plan.get(layer.name, 0))
        rows.append(
            {
                "layer": layer.name,
                "class": cls,
                "weights": size,
                "clusters": target,
                "unique": int(unique),
                "sparsity": round(zeros / size, 4) if size else 0.0,
            }
        )
        zeros_all += zeros
        size_all += size
        if target > 0:
            zeros_cl += zeros
            size_cl += size
            max_unique = max(max_unique, unique)
    return {
        "layers": rows,
        "clustered_layers": sum(1 for r in rows if r["clusters"] > 0),
        "clustered_share": size_cl / size_all if size_all else 0.0,
        "max_unique": int(max_unique),
        "sparsity": zeros_all / size_all if size_all else 0.0,
        "sparsity_clustered": zeros_cl / size_cl if size_cl else 0.0,
        "weights": size_all,
    }
