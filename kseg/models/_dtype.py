"""Bring a model trained under a Keras mixed-precision policy back to float32.

Here rather than in ``kseg.training`` because :func:`kseg.models.load_model` uses it: every model
kseg loads is float32, whatever policy trained it.
"""

from __future__ import annotations


def is_mixed(model) -> bool:
    """True when any layer of ``model`` computes in a dtype other than float32."""
    return any(
        getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32") != "float32"
        for layer in model.submodules
        if hasattr(layer, "dtype_policy")
    )


def to_float32(model):
    """The same model (architecture, weights) with every layer in float32.

    A model trained under a mixed policy saves that policy in each layer's config; rebuilding it
    in float32 keeps the float32 master weights and removes the casts, so the TFLite converter,
    the parity check and QAT see the graph a float32 run would have produced.
    """
    from kseg._keras import keras

    if not is_mixed(model):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        plain = keras.models.clone_model(model, clone_function=clone)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    plain.set_weights(model.get_weights())
    return plain
