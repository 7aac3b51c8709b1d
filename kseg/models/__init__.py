"""The model zoo: create any architecture by name, load saved models, read their kseg spec.

Every model has the same outer wiring, written once in :func:`create_model`::

    Input "image" (raw pixels 0..255, float32)
      -> Normalize "normalize"  (a Rescaling: (pixel/255 - mean)/std, per channel; holds the spec)
      -> architecture builder   (MODELS[name](x, **options) -> features)
      -> head: 1x1 Conv2D "logits" -> sigmoid (K=1) / softmax (K>1) in float32, named "mask"
         (``denoise`` models: 1x1 Conv2D -> sigmoid -> x255 "denoised", pixel units 0..255)

Example:
    >>> from kseg.models import MODELS, create_model, load_model, model_spec
    >>> MODELS.names()
    ['attention_unet', 'denoising_ae', 'dilated_unet', 'mobile_unet', ...]
    >>> model = create_model("attention_unet", input_shape=(256, 256, 1), depth=4, filters=16)
    >>> model.save("m.keras"); model_spec(load_model("m.keras"))["options"]["filters"]
    16

Metadata: :func:`model_spec` returns ``{"name", "task", "options", "num_classes", "mean", "std",
"input_shape"}``, stored in the ``spec`` entry of the ``normalize`` layer's config, so it survives
``.keras``/``.h5``/SavedModel round trips and QAT cloning (``layer.get_config()["spec"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kseg.config import Task
from kseg.errors import ConfigError, ModelError
from kseg.models._registry import MODELS, model_task, register_model

# The architecture modules (and TensorFlow) are imported by MODELS on first use, so importing
# kseg.models stays light for the CLI.

__all__ = [
    "MODELS",
    "create_model",
    "custom_objects",
    "load_model",
    "model_spec",
    "register_custom_objects",
    "register_model",
    "model_task",
]

SPEC_LAYER = "normalize"

_EXTRA_OBJECTS: list[Callable[[], dict[str, Any]]] = []


def create_model(
    name: str,
    *,
    input_shape: Sequence[int] = (128, 128, 1),
    num_classes: int = 1,
    mean: float | Sequence[float] = (0.0,),
    std: float | Sequence[float] = (1.0,),
    **options: Any,
):
    """Build a registered architecture as a Keras functional model named ``name``.

    Args:
        name: registry name (``MODELS.names()``).
        input_shape: ``(H, W, C)``; C is 1 or 3; H and W multiples of ``2**depth``.
        num_classes: 1 -> sigmoid output, > 1 -> softmax over the last axis. Ignored by
            ``denoise`` models, whose output has C channels.
        mean, std: normalization of ``pixel/255``; one value or one per channel.
        **options: the architecture's options (see ``kseg models info NAME``).

    Raises:
        ConfigError: unknown model or option, bad value, or input size not divisible.
    """
    from kseg._keras import keras
    from kseg.models.layers import Normalize
    from kseg.models.options import validate_options

    builder = MODELS.get(name)
    opts = validate_options(name, builder, options)
    h, w, c = _check_input_shape(input_shape, int(opts.get("depth", 0)))
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ConfigError(f"model.num_classes = {num_classes!r} must be a whole number >= 1")
    num_classes = int(num_classes)
    mean_c = _per_channel(mean, c, "mean")
    std_c = _per_channel(std, c, "std")
    if any(s <= 0 for s in std_c):
        raise ConfigError(f"data.std = {list(std_c)} must be > 0 for every channel")
    task = model_task(name)
    spec = {
        "name": name,
        "task": task,
        "options": opts,
        "num_classes": c if task == Task.DENOISE else num_classes,
        "mean": mean_c,
        "std": std_c,
        "input_shape": [h, w, c],
    }
    inputs = keras.Input(shape=(h, w, c), name="image")
    x = Normalize(
        scale=[1.0 / (255.0 * s) for s in std_c],
        offset=[-m / s for m, s in zip(mean_c, std_c, strict=True)],
        spec=spec,
        name=SPEC_LAYER,
    )(inputs)
    features = builder(x, **opts)
    if task == Task.DENOISE:
        outputs = _image_head(features, c)
    else:
        outputs = _mask_head(features, num_classes)
    return keras.Model(inputs, outputs, name=name)


def _mask_head(features, num_classes: int):
    from kseg._keras import keras

    L = keras.layers
    feats = features if isinstance(features, (list, tuple)) else [features]
    logits = [
        L.Conv2D(
            num_classes, 1, dtype="float32", name="logits" if len(feats) == 1 else f"logits_{i + 1}"
        )(f)
        for i, f in enumerate(feats)
    ]
    if len(logits) > 1:
        # Deep supervision: heads on every full-resolution decoder output, averaged (the accurate
        # mode of UNet++); the one loss on the average trains every head.
        logits = [L.Average(name="logits")(logits)]
    act = "sigmoid" if num_classes == 1 else "softmax"
    return L.Activation(act, dtype="float32", name="mask")(logits[0])


def _image_head(features, channels: int):
    from kseg._keras import keras

    L = keras.layers
    x = L.Conv2D(channels, 1, dtype="float32", name="logits")(features)
    x = L.Activation("sigmoid", dtype="float32", name="unit_image")(x)
    return L.Rescaling(255.0, dtype="float32", name="denoised")(x)


def _check_input_shape(input_shape: Sequence[int], depth: int) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(
            f"input_shape {input_shape!r} must be (height, width, channels)"
        ) from None
    if c not in (1, 3):
        raise ConfigError(f"input channels = {c}: use 1 (grayscale) or 3 (RGB)")
    factor = 2**depth
    for size in dict.fromkeys((h, w)):
        if size < factor or size % factor:
            lower = max(factor, size // factor * factor)
            upper = (size // factor + 1) * factor
            options = f"{lower} or {upper}" if lower != upper and size > factor else f"{upper}"
            raise ConfigError(
                f"input size {size} is not a multiple of {factor} (depth {depth}); use {options}"
            )
    return h, w, c


def _per_channel(value: float | Sequence[float], channels: int, key: str) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ConfigError(
            f"data.{key} has {len(values)} values for {channels} channels; give 1 or {channels}"
        )
    return values


def model_spec(model) -> dict[str, Any]:
    """The kseg spec stored by :func:`create_model`, read from the ``normalize`` layer config.

    For a model not made by kseg, returns what can be read from the graph: ``name`` (the model
    name), ``input_shape``, ``num_classes`` (last output axis) and ``task`` ``"segment"``, with
    ``options`` empty and ``mean``/``std`` ``None``.
    """
    for layer in _all_layers(model):
        # QAT wraps layers (QuantizeWrapper "quant_normalize" holding the layer as ``.layer``)
        for candidate in (layer, getattr(layer, "layer", None)):
            if candidate is not None and candidate.name == SPEC_LAYER:
                spec = candidate.get_config().get("spec")
                if spec:
                    return dict(spec)
    return {
        "name": model.name,
        "task": Task.SEGMENT.value,
        "options": {},
        "num_classes": int(model.outputs[0].shape[-1]),
        "mean": None,
        "std": None,
        "input_shape": [int(d) for d in model.inputs[0].shape[1:]],
    }


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def register_custom_objects(provider: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Add objects needed to load models to :func:`custom_objects` (from a package above
    ``kseg.models``). ``provider`` is called lazily, when a model is loaded. Usable as a decorator.
    """
    _EXTRA_OBJECTS.append(provider)
    return provider


def custom_objects() -> dict[str, Any]:
    """Every custom object a kseg model file may reference: kseg layers, tfmot's quantize and
    prune objects (QAT and pruned files, :mod:`kseg.models.quant_objects`), plus registered
    extras (:func:`register_custom_objects`).
    """
    from kseg.models.layers import custom_layers

    objects: dict[str, Any] = dict(custom_layers())
    try:
        from kseg.models.quant_objects import tfmot_objects
    except ImportError:  # tensorflow-model-optimization not installed
        pass
    else:
        objects.update(tfmot_objects())
    for provider in _EXTRA_OBJECTS:
        objects.update(provider())
    return objects


def load_model(path: str | Path, *, compile: bool = False):
    """Load a ``.keras`` / ``.h5`` file or a SavedModel folder with the kseg custom objects.

    Raises:
        ModelError: one line naming ``path`` when it is missing, of an unknown kind, or corrupt.
    """
    from kseg._keras import keras

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: folder is not a SavedModel (no saved_model.pb)")
    elif path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ModelError(
            f"{path}: unknown model format; use a .keras or .h5 file or a SavedModel folder"
        )
    try:
        with keras.utils.custom_object_scope(custom_objects()):
            model = keras.models.load_model(path, compile=compile)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad file for the user
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load model ({type(exc).__name__}: {detail})") from None
    # a checkpoint of a mixed-precision run (train.precision) is rebuilt in float32
    from kseg.models._dtype import to_float32

    return model if compile else to_float32(model)
