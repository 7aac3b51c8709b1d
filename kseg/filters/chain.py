"""Filter chains: parsed from the config, stored in the run and the model card, applied everywhere.

A chain is a list of stages, each ``{name: {param: value}}``::

    data:
      preprocess:
        - lee: {size: 5}
        - clahe: {clip: 2.0}

A stage may also be a bare name (``- srad``: default parameters), and the whole chain a compact
string, handy on the command line: ``--set data.preprocess="lee:size=5+clahe:clip=2"``.
:func:`parse_chain` validates names and parameters (one-line errors that list the valid ones) and
fills in every default, so the stored chain says exactly what ran.

The chain works on images at the model input size: training applies it to the decoded, resized
arrays (:func:`kseg.data.pipeline.load_splits`), and every predictor (Keras, TFLite in
:mod:`kseg.runtime`) applies it to the resized input batch, so training, evaluation, prediction and
the runtime see the same pixels. Nothing here imports TensorFlow.

This module sits below ``kseg.config`` (which validates ``data.preprocess`` with
:func:`parse_chain`) and imports nothing above it. The ``denoising_ae`` stage is a model, so it is
opened by a model opener given from above: ``Chain.parse(spec, open_model=...)`` or
:meth:`Chain.bind`, else the one :func:`set_model_opener` set (:mod:`kseg.runtime` sets its
``open_model`` when imported; ``kseg.training`` imports it, so every command that loads data has
it). A model stage with no opener at all is a :class:`~kseg.errors.ModelError`.

Example:
    >>> chain = Chain.parse([{"lee": {"size": 5}}, "clahe"])
    >>> chain.describe()
    'lee(size=5, looks=None) + clahe(clip=2.0, tiles=8)'
    >>> out = chain(images)          # (N, H, W, C) or (H, W[, C]); same shape and dtype
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, ModelError, did_you_mean
from kseg.filters.pixel import FILTERS, _cast_like, filter_params

#: The trained denoising autoencoder as a stage (``{denoising_ae: {model: FILE}}``).
DENOISER = "denoising_ae"
_KEY = "data.preprocess"

#: Opens a model file as a predictor (``.predict(batch)``, ``.input_size``), e.g.
#: :func:`kseg.runtime.open_model`.
ModelOpener = Callable[[Path], Any]
_default_opener: list[ModelOpener] = []


def set_model_opener(open_model: ModelOpener) -> None:
    """The opener of ``denoising_ae`` stages in chains not given one (:mod:`kseg.runtime` sets
    :func:`~kseg.runtime.open_model` when it is imported)."""
    _default_opener[:] = [open_model]


def stage_names() -> list[str]:
    """Every valid stage name: the registered filters and ``denoising_ae``."""
    return sorted([*FILTERS.names(), DENOISER])


def _unknown(name: Any, where: str) -> ConfigError:
    names = stage_names()
    return ConfigError(
        f"{where}: unknown filter {name!r}{did_you_mean(name, names)}; valid: {', '.join(names)}"
    )


def _parse_string(text: str, where: str) -> list[Any]:
    import yaml

    stages: list[Any] = []
    for part in (p.strip() for p in text.split("+")):
        if not part:
            continue
        name, *kvs = part.split(":")
        params: dict[str, Any] = {}
        for kv in kvs:
            if "=" not in kv:
                raise ConfigError(
                    f"{where}: {part!r}: write parameters as NAME:KEY=VALUE:KEY=VALUE"
                )
            k, v = kv.split("=", 1)
            params[k.strip()] = yaml.safe_load(v)
        stages.append({name.strip(): params})
    return stages


def _normalize_stage(item: Any, where: str) -> dict[str, dict[str, Any]]:
    if isinstance(item, str):
        name, params = item.strip(), {}
    elif isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ConfigError(
                f"{where}: parameters of {name!r} must be a mapping, e.g. - {name}: {{size: 5}}"
            )
    else:
        raise ConfigError(
            f"{where}: each stage is a name or {{name: {{param: value}}}}, got {item!r}"
        )
    if name == DENOISER:
        return {DENOISER: _denoiser_params(params, where)}
    if name not in FILTERS:
        raise _unknown(name, where)
    defaults = filter_params(name)
    bad = [k for k in params if k not in defaults]
    if bad:
        raise ConfigError(
            f"{where}: {name} has no parameter {bad[0]!r}; valid: {', '.join(defaults) or 'none'}"
        )
    full = {**defaults, **params}
    for k, v in full.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{where}: {name}.{k} = {v!r} must be a number")
    # run once on a tiny image: value checks (odd sizes, ranges) fail here, before any data loads
    try:
        FILTERS.get(name)(np.full((24, 24), 100, np.uint8), **full)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return {name: full}


def _denoiser_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    bad = [k for k in params if k != "model"]
    if bad or not params.get("model"):
        raise ConfigError(
            f"{where}: denoising_ae needs exactly one parameter, model: FILE (.keras or .tflite "
            f"from `kseg train --task denoise`)"
        )
    return {"model": str(params["model"])}


@dataclass(frozen=True)
class Chain:
    """A validated filter chain (empty: no preprocessing)."""

    stages: tuple[dict[str, dict[str, Any]], ...] = ()
    open_model: ModelOpener | None = field(default=None, compare=False, repr=False)
    _models: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, spec: Any, *, where: str = _KEY, open_model: ModelOpener | None = None) -> Chain:
        """From a config value: ``None``, a list of stages, a compact string, or a :class:`Chain`.

        ``open_model`` opens the model of a ``denoising_ae`` stage (default: the one
        :func:`set_model_opener` set).
        """
        if isinstance(spec, Chain):
            return spec if open_model is None else spec.bind(open_model)
        return cls(parse_chain(spec, where=where), open_model)

    def bind(self, open_model: ModelOpener) -> Chain:
        """The same stages, with ``open_model`` opening the ``denoising_ae`` stage's model."""
        return dataclasses.replace(self, open_model=open_model, _models={})

    def __bool__(self) -> bool:
        return bool(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def to_list(self) -> list[dict[str, dict[str, Any]]]:
        """Plain lists and dicts for YAML/JSON (the run config and the model card)."""
        return [{k: dict(v)} for s in self.stages for k, v in s.items()]

    def describe(self) -> str:
        if not self.stages:
            return "none"
        parts = []
        for s in self.stages:
            for name, params in s.items():
                inner = ", ".join(f"{k}={v}" for k, v in params.items())
                parts.append(f"{name}({inner})")
        return " + ".join(parts)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Apply every stage to one image ``(H, W[, C])`` or a batch ``(N, H, W, C)``."""
        return self.apply(images)

    def apply(self, images: np.ndarray, *, batch: bool | None = None) -> np.ndarray:
        """Same shape and dtype out as in. ``batch`` says whether axis 0 is the batch axis
        (default: a 4-D array is a batch)."""
        arr = np.asarray(images)
        if not self.stages:
            return arr
        is_batch = arr.ndim == 4 if batch is None else batch
        if not is_batch:
            return self.apply(arr[None], batch=True)[0]
        out = arr
        for stage in self.stages:
            ((name, params),) = stage.items()
            if name == DENOISER:
                out = self._denoise(out, params["model"])
            else:
                fn = FILTERS.get(name)
                out = np.stack([fn(im, **params) for im in out]) if len(out) else out
        return out

    def apply_pixels(self, batch: np.ndarray) -> np.ndarray:
        """For predictors: raw pixels float ``(N, S, S, C)`` in [0, 255] -> filtered float32.

        The pixels are rounded to uint8 first (they come from uint8 images, so this is exact),
        which makes a predictor filter exactly what training filtered.
        """
        if not self.stages:
            return np.asarray(batch, np.float32)
        u8 = np.clip(np.rint(np.asarray(batch, np.float32)), 0, 255).astype(np.uint8)
        return self.apply(u8, batch=True).astype(np.float32)

    def _denoise(self, batch: np.ndarray, model_path: str) -> np.ndarray:
        model = self._models.get(model_path)
        if model is None:
            opener = self.open_model or next(iter(_default_opener), None)
            model = self._models[model_path] = _load_denoiser(model_path, opener)
        return model(batch)


def parse_chain(spec: Any, *, where: str = _KEY) -> tuple[dict[str, dict[str, Any]], ...]:
    """Validate a chain spec and fill in defaults: ``({name: {param: value}}, ...)``.

    Raises:
        ConfigError: unknown filter or parameter, or a bad value (one line, listing valid ones).
    """
    if spec is None or spec == "" or spec == []:
        return ()
    if isinstance(spec, Chain):
        return spec.stages
    if isinstance(spec, str):
        spec = _parse_string(spec, where)
    if isinstance(spec, dict):
        spec = [{k: v} for k, v in spec.items()]
    if not isinstance(spec, (list, tuple)):
        raise ConfigError(
            f"{where}: expected a list of filters, e.g. [{{lee: {{size: 5}}}}, {{clahe: {{clip: 2.0}}}}]"
        )
    return tuple(_normalize_stage(item, where) for item in spec)


class _Denoiser:
    """A denoising model as a batch function: uint8/float pixels in, same dtype out."""

    def __init__(self, predict, size: int) -> None:
        self.predict, self.size = predict, size

    #: images per call, so a whole training set never goes through the model at once
    chunk = 8

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import cv2

        n, h, w = batch.shape[:3]
        x = batch.astype(np.float32)
        if (h, w) != (self.size, self.size):
            x = np.stack([cv2.resize(im, (self.size, self.size)) for im in x])
            x = x.reshape(n, self.size, self.size, -1)
        y = np.concatenate(
            [
                np.asarray(self.predict(x[i : i + self.chunk]), np.float32)
                for i in range(0, n, self.chunk)
            ]
        )
        if (h, w) != (self.size, self.size):
            y = np.stack([cv2.resize(im, (w, h)) for im in y]).reshape(n, h, w, -1)
        return _cast_like(y.reshape(batch.shape), batch)


def _load_denoiser(path: str, open_model: ModelOpener | None) -> _Denoiser:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: denoising_ae model file not found (data.preprocess)")
    if open_model is None:
        raise ModelError(
            f"{p}: no model opener for the denoising_ae stage; import kseg.runtime or pass "
            "Chain.parse(..., open_model=kseg.runtime.open_model)"
        )
    m = open_model(p)  # TensorFlow only for a .keras denoiser
    return _Denoiser(m.predict, m.input_size)


def apply_chain(
    spec: Any, images: np.ndarray, *, open_model: ModelOpener | None = None
) -> np.ndarray:
    """Convenience: parse ``spec`` and apply it (no-op for an empty chain)."""
    chain = Chain.parse(spec, open_model=open_model)
    return chain(images) if chain else np.asarray(images)


def chain_from_card(card: dict[str, Any] | None, *, open_model: ModelOpener | None = None) -> Chain:
    """The chain a model card records under ``input.preprocess`` (empty when absent)."""
    spec = ((card or {}).get("input") or {}).get("preprocess")
    return Chain.parse(spec, where="model card input.preprocess", open_model=open_model)


__all__ = [
    "DENOISER",
    "Chain",
    "ModelOpener",
    "apply_chain",
    "chain_from_card",
    "parse_chain",
    "set_model_opener",
    "stage_names",
]
