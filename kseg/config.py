"""Typed, frozen configuration.

YAML and CLI flags are parsed here, at the edge, into frozen dataclasses. Every key is checked:
an unknown key or a value of the wrong type is a :class:`~kseg.errors.ConfigError` that names the
key, the file, and the valid keys or values.

Example:
    >>> cfg = load_config("configs/default.yaml", {"train.epochs": 3, "model.name": "unet"})
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kseg.errors import ConfigError, did_you_mean


class StrEnum(enum.StrEnum):
    """A string enum whose members compare equal to their values."""

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


class SyntheticKind(StrEnum):
    """Embedded synthetic data sets."""

    ULTRASOUND = "ultrasound"  #: B-mode speckle with lesions; mask = lesion
    VESSELS = "vessels"  #: retinal fundus vessel tree; mask = vessels
    SKIN = "skin"  #: dermoscopy pigmented lesion with hairs; mask = lesion


class ResizeMode(StrEnum):
    """How an image of any size is brought to the model input size."""

    STRETCH = "stretch"  #: resize each axis independently
    LETTERBOX = "letterbox"  #: keep aspect ratio, pad with zeros


class Sampling(StrEnum):
    """What a training sample is (``data.sampling``)."""

    RESIZE = "resize"  #: the whole image, resized to ``img_size``
    #: a random ``img_size`` window of the image at its native resolution (no resizing), part of
    #: them centred on a foreground pixel (``patch_foreground``); validation on the tiles that
    #: cover each validation image, and inference tiled (``tile=auto``)
    PATCH = "patch"


class Optimizer(StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


class Schedule(StrEnum):
    PLATEAU = "plateau"  #: ReduceLROnPlateau on validation loss
    COSINE = "cosine"  #: linear warm-up then cosine decay
    CONSTANT = "constant"


class Strategy(StrEnum):
    DEFAULT = "default"  #: one device
    MIRRORED = "mirrored"  #: several GPUs (or logical CPUs) on one machine
    MULTI_WORKER = "multi_worker"  #: several machines, from TF_CONFIG


class Precision(StrEnum):
    """Training arithmetic (``kseg.training.precision``); losses and metrics stay float32."""

    AUTO = "auto"  #: bfloat16 where the CPU makes it measurably faster, else float32
    FLOAT32 = "float32"
    MIXED_BFLOAT16 = "mixed_bfloat16"  #: bfloat16 compute, float32 weights (CPUs with AMX)
    MIXED_FLOAT16 = "mixed_float16"  #: float16 compute with loss scaling (GPUs only)


class Task(StrEnum):
    SEGMENT = "segment"
    DENOISE = "denoise"


class IODType(StrEnum):
    INT8 = "int8"
    UINT8 = "uint8"


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (albumentations), applied to image and mask together.

    Each ``*_p`` is the probability of that transform; 0 turns it off.
    """

    enabled: bool = True
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    rotate_p: float = 0.5
    rotate_limit: float = 15.0
    crop_p: float = 0.3
    crop_scale: tuple[float, float] = (0.7, 1.0)
    brightness_contrast_p: float = 0.5
    gamma_p: float = 0.3
    clahe_p: float = 0.1
    blur_p: float = 0.1
    gauss_noise_p: float = 0.2
    speckle_p: float = 0.2


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they reach the model.

    Args:
        path: folder with ``images/`` and ``masks/``; ``None`` uses the embedded synthetic data.
        synthetic_kind: which synthetic set when ``path`` is ``None``.
        synthetic_n: how many synthetic samples.
        img_size: model input size (square); must be a multiple of 2**depth.
        channels: 1 (grayscale), 3 (RGB) or ``auto`` (default): RGB when any image has real
            colour (its channels differ), else grayscale; the run's ``config.yaml`` stores the
            concrete value, so conversion and prediction use it.
        resize: ``stretch`` or ``letterbox``.
        val_fraction / test_fraction: share of groups in the validation / test split.
        group_regex: regex whose first group (or whole match) on the file stem names the group
            (patient, exam); the manifest's ``group`` column wins when present.
        group_column: manifest column that names the group instead of ``group`` (any extra
            column of ``manifest.csv`` is kept as metadata).
        stratify: manifest column whose values are spread evenly over the splits (a stratified
            group split, e.g. by class or scanner); ``None`` for a plain group split.
        split_seed: seed of the train/validation/test split; ``None`` (default) uses
            ``train.seed``. Set it to keep one split while ``--seed`` varies the training (seed
            studies: the same images in every run's validation). A run's ``split.csv`` and a
            manifest's ``split`` column win over it.
        max_pixels: largest image (width x height) read; checked from the file header before
            decoding, so a huge file fails at once with a clear message instead of filling memory.
        preprocess: filter chain applied to every image at the model input size (training,
            evaluation, prediction and the runtime), e.g. ``[{lee: {size: 5}}, {clahe: {clip: 2}}]``;
            see :mod:`kseg.filters`. Stored with defaults filled in, and in the model card.
        mean / std: normalization of pixel/255, per channel or one value; stored inside the model.
        cache: cache decoded, resized images in memory.
        classes: ordered mapping of foreground class name -> the value its pixels hold in the
            mask files: an id (palette index or grey value, >= 1) or a colour ``[R, G, B]``,
            e.g. ``{nerve: 1, vessel: 2}`` or ``{tumour: [255, 0, 0]}`` (a list of names means
            ids 1, 2, ...). The model's class id of a name is its position + 1 (background is 0);
            see :func:`class_names`. With two or more names ``model.num_classes`` follows
            (``len + 1``) unless ``merge_classes`` is set.
        merge_classes: train masks that hold several foreground classes as binary (every
            non-zero id is foreground). Without it, ``kseg train`` refuses such a folder with
            ``model.num_classes: 1`` (the binary-merge guard).
        sampling: ``resize`` (default): each training sample is a whole image resized to
            ``img_size``; ``patch``: an ``img_size`` window of the image at native resolution, for
            structures too small or thin to survive shrinking the whole image (``kseg plan``
            chooses it then). Validation then scores the tiles that cover each validation image,
            and the model card says ``native_scale``, so ``kseg predict``/``evaluate`` tile.
        patch_foreground: with ``sampling: patch``, the share of training patches centred on a
            foreground pixel (of a class drawn uniformly among those the image holds, so rare
            classes are seen as often as common ones); the rest are drawn uniformly.
    """

    path: str | None = None
    synthetic_kind: SyntheticKind = SyntheticKind.ULTRASOUND
    synthetic_n: int = 400
    img_size: int = 128
    channels: int | str = "auto"
    resize: ResizeMode = ResizeMode.STRETCH
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    group_regex: str | None = None
    group_column: str | None = None
    stratify: str | None = None
    split_seed: int | None = None
    max_pixels: int = 100_000_000
    preprocess: tuple[dict[str, Any], ...] = ()
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    cache: bool = True
    classes: dict[str, Any] = field(default_factory=dict)
    merge_classes: bool = False
    sampling: Sampling = Sampling.RESIZE
    patch_foreground: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture by registry name plus its options (depth, filters, norm, ...)."""

    name: str = "unet"
    num_classes: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Args:
        loss: registry name (``kseg.losses``); ``loss_options`` are its keyword arguments.
        weight_decay: AdamW's decoupled weight decay (``optimizer: adamw`` only; Adam and SGD
            do not use it).
        strategy: ``default``, ``mirrored`` or ``multi_worker`` (``tf.distribute``).
        steps_per_epoch: limit steps per epoch (``None``: one pass over the training split).
        threshold: probability above which a pixel is foreground.
        time_limit_minutes: stop after the epoch during which this wall-clock budget runs out.
        budget_minutes: wall-clock minutes for the whole run, counted from the start of the
            command: after its second epoch the run times its own epochs and sets the epoch count
            (and the cosine schedule's length) so that it ends within the budget
            (``kseg.training.budget``); ``epochs`` is then the planned count it starts from.
        precision: ``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16`` (GPU).
        jit_compile: compile the training step with XLA.
        init: start from the weights of this model file (or run directory) where layer names and
            shapes match (``kseg.training.finetune``); ``freeze_encoder`` keeps its encoder fixed,
            ``unfreeze_after`` trains it too from that epoch on.
    """

    task: Task = Task.SEGMENT
    epochs: int = 30
    batch_size: int = 16
    optimizer: Optimizer = Optimizer.ADAM
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Schedule = Schedule.PLATEAU
    warmup_epochs: int = 1
    early_stopping_patience: int = 8
    loss: str = "combo"
    loss_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    freeze_encoder: bool = False
    unfreeze_after: int | None = None
    seed: int = 42
    strategy: Strategy = Strategy.DEFAULT
    steps_per_epoch: int | None = None
    threshold: float = 0.5
    time_limit_minutes: float | None = None
    budget_minutes: float | None = None
    precision: Precision = Precision.AUTO
    jit_compile: bool = False


@dataclass(frozen=True)
class ExportConfig:
    """TFLite conversion settings."""

    representative_samples: int = 64
    io_dtype: IODType = IODType.INT8
    max_dice_drop: float = 0.01


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# ---------------------------------------------------------------------------------------------
# parsing


#: Top-level sections of a config file that belong to one command, not to :class:`Config`:
#: ``sweep:`` (models, losses, seeds, int8, hd95) is read and validated by ``kseg sweep``
#: (:func:`kseg.sweep.runner.read_sweep_section`). :func:`load_config` drops them, so every command
#: can train from such a file and no run directory's ``config.yaml`` ever holds them.
COMMAND_SECTIONS = ("sweep",)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML file (optional), apply dotted-key overrides, and validate everything.

    Args:
        path: YAML file with sections ``data``, ``model``, ``train``, ``export`` (and any of
            :data:`COMMAND_SECTIONS`, which are skipped here).
        overrides: ``{"train.epochs": 5, ...}``; a ``None`` value sets the key to null (the CLI
            leaves out the flags a user did not give).
    """
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        raw = _read_config_yaml(path)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return from_dict(raw, source=source)


_WARNED: set[str] = set()  # run configs whose unknown keys were reported in this process


def load_run_config(path: str | Path) -> Config:
    """A run directory's ``config.yaml``, as commands that use a trained run read it.

    Keys this kseg does not know (the run was written by another version, e.g. with an option
    since removed) are left out with one warning line on stderr naming them, so an upgrade never
    makes an old run unreadable; every other check is :func:`load_config`'s. ``kseg train
    --resume`` reads the file strictly instead: a recipe cannot go on without one of its keys.
    """
    import sys

    raw = _read_config_yaml(path)
    dropped = _drop_unknown(Config, raw, prefix="")
    if dropped and str(path) not in _WARNED:  # one command may open a run several times
        _WARNED.add(str(path))
        print(
            f"warning: {path}: {', '.join(dropped)} not known to this kseg (the run was written by "
            "another version); ignored",
            file=sys.stderr,
        )
    return from_dict(raw, source=str(path))


def _drop_unknown(cls: type, raw: Any, *, prefix: str) -> list[str]:
    """Remove from ``raw`` (in place) the keys no field of dataclass ``cls`` has; their dotted
    names."""
    if not isinstance(raw, dict):
        return []  # a wrong type is from_dict's error to report
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    dropped = []
    for key in list(raw):
        if key not in fields:
            dropped.append(f"'{prefix}{key}'")
            del raw[key]
        elif dataclasses.is_dataclass(hints[key]):
            dropped += _drop_unknown(hints[key], raw[key], prefix=f"{prefix}{key}.")
    return dropped


def _read_config_yaml(path: str | Path) -> dict[str, Any]:
    raw = read_yaml(path)
    for section in COMMAND_SECTIONS:  # read by their own command, never part of a Config
        raw.pop(section, None)
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}; check indentation and colons") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections data/model/train/export")
    return data


def from_dict(raw: dict[str, Any], *, source: str = "config") -> Config:
    cfg = _build(Config, raw, prefix="", source=source)
    model_raw = raw.get("model") if isinstance(raw, dict) else None
    explicit = isinstance(model_raw, dict) and "num_classes" in model_raw
    return _classes_vs_num_classes(cfg, explicit=explicit, source=source)


def class_names(cfg: Config) -> tuple[str, ...]:
    """Names of the model's output classes; index = class id, ``"background"`` first.

    Binary models (``model.num_classes == 1``): ``("background", NAME)``, NAME being the one
    class named in ``data.classes`` or ``"foreground"``. Multi-class: ``("background", *names)``
    from ``data.classes``, else ``("background", "class_1", "class_2", ...)``.

    Example:
        >>> class_names(load_config(None, {"data.classes": {"nerve": 1, "vessel": 2}}))
        ('background', 'nerve', 'vessel')
    """
    names = tuple(cfg.data.classes)
    k = int(cfg.model.num_classes)
    if k <= 1:
        return ("background", names[0] if len(names) == 1 else "foreground")
    if len(names) == k - 1:
        return ("background", *names)
    return ("background", *(f"class_{i}" for i in range(1, k)))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain dict (enums as strings, tuples as lists), ready for YAML/JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        out[f.name] = _plain(getattr(config, f.name))
    return out


def save_config(config: Config, path: str | Path) -> Path:
    import yaml

    from kseg.atomic import write_text

    return write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def replace(config: Config, **sections: Any) -> Config:
    """``replace(cfg, train={"epochs": 2})``: a copy with some keys changed, validated again."""
    raw = to_dict(config)
    if "classes" in sections.get("data", {}) and "num_classes" not in sections.get("model", {}):
        raw["model"].pop("num_classes", None)  # new class names: num_classes follows them again
    for section, values in sections.items():
        for key, value in values.items():
            _set_dotted(raw, f"{section}.{key}", value)
    return from_dict(raw)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, *, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}'{did_you_mean(key, fields)}; "
                f"valid keys in {where}: " + ", ".join(fields)
            )
    kwargs = {}
    for name, value in raw.items():
        special = _SPECIAL.get(f"{prefix}{name}")
        if special is not None:
            kwargs[name] = special(value, key=f"{prefix}{name}", source=source)
            continue
        kwargs[name] = _coerce(hints[name], value, key=f"{prefix}{name}", source=source)
    return cls(**kwargs)


def _channels(value: Any, *, key: str, source: str) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if _is_int(value) and not isinstance(value, bool) and int(value) in (1, 3):
        return int(value)
    raise ConfigError(f"{source}: {key} = {value!r} is not valid; use 1, 3 or auto")


def _preprocess(value: Any, *, key: str, source: str) -> tuple[dict[str, Any], ...]:
    from kseg.filters.chain import parse_chain  # numpy/OpenCV only, nothing above config

    return parse_chain(value, where=f"{source}: {key}")


_RESERVED_NAMES = {"background"}


def _classes(value: Any, *, key: str, source: str) -> dict[str, int | tuple[int, int, int]]:
    """``data.classes``: name -> id (int >= 1) or colour ``[R, G, B]``; a list means ids 1..K."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        value = {name: i + 1 for i, name in enumerate(value)}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{source}: {key} must map class names to ids or colours, e.g. "
            f"{{nerve: 1, vessel: 2}} or {{tumour: [255, 0, 0]}}; got {value!r}"
        )
    out: dict[str, int | tuple[int, int, int]] = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\n\r\t,"):
            raise ConfigError(
                f"{source}: {key}: class name {name!r} is not valid; use a non-empty word "
                f"without commas, tabs or line breaks"
            )
        if name.strip().lower() in _RESERVED_NAMES:
            raise ConfigError(
                f"{source}: {key}: {name!r} is reserved for id 0; name only the foreground classes"
            )
        if _is_int(v) and not isinstance(v, bool) and 1 <= int(v) <= 65535:
            out[name.strip()] = int(v)
        elif (
            isinstance(v, (list, tuple))
            and len(v) == 3
            and all(_is_int(c) and not isinstance(c, bool) and 0 <= int(c) <= 255 for c in v)
            and any(int(c) for c in v)
        ):
            out[name.strip()] = (int(v[0]), int(v[1]), int(v[2]))
        else:
            raise ConfigError(
                f"{source}: {key}.{name} = {v!r} is not valid; use an id 1..65535 (palette index "
                f"or grey value in the masks) or a colour [R, G, B] other than black"
            )
    kinds = {isinstance(v, int) for v in out.values()}
    if len(kinds) > 1:
        raise ConfigError(
            f"{source}: {key} mixes ids and colours; the masks hold either ids or colours, "
            f"so give all classes as ids or all as [R, G, B]"
        )
    seen: dict[Any, str] = {}
    for name, v in out.items():
        if v in seen:
            raise ConfigError(
                f"{source}: {key}: {seen[v]} and {name} both have {list(v) if isinstance(v, tuple) else v}; "
                f"give each class its own id or colour"
            )
        seen[v] = name
    return out


def _classes_vs_num_classes(cfg: Config, *, explicit: bool, source: str) -> Config:
    """``model.num_classes`` follows ``data.classes`` (len + 1) unless set to something else."""
    names = list(cfg.data.classes)
    k = int(cfg.model.num_classes)
    if k < 1:
        raise ConfigError(
            f"{source}: model.num_classes = {k} is not valid; use 1 (binary) or the number of "
            f"classes including background"
        )
    if not names:
        return cfg
    shown = ", ".join(names)
    if cfg.data.merge_classes:
        if k != 1:
            raise ConfigError(
                f"{source}: data.merge_classes trains one foreground (binary) but "
                f"model.num_classes = {k}; drop one of the two keys"
            )
        return cfg
    want = len(names) + 1
    if k == want or (len(names) == 1 and k == 1):
        return cfg
    if k == 1 and not explicit:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=want))
    raise ConfigError(
        f"{source}: model.num_classes = {k} but data.classes names {len(names)} class(es) "
        f"({shown}), which needs model.num_classes = {want}"
        + (" (or data.merge_classes: true to train them as one foreground)" if k == 1 else "")
        + "; drop model.num_classes or fix data.classes"
    )


#: keys with their own parser (value -> validated value)
_SPECIAL = {
    "data.channels": _channels,
    "data.preprocess": _preprocess,
    "data.classes": _classes,
}


def _coerce(tp: Any, value: Any, *, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=f"{key}.", source=source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key=key, source=source)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            valid = ", ".join(m.value for m in tp)
            raise ConfigError(
                f"{source}: {key} = {value!r} is not valid; use one of: {valid}"
            ) from None
    if origin is tuple:
        seq = value if isinstance(value, (list, tuple)) else [value]
        item_type = args[0] if args else Any
        try:
            items = tuple(_scalar(item_type, v, key=key, source=source) for v in seq)
        except ConfigError:
            raise
        if len(args) == 2 and args[1] is not Ellipsis and len(items) != 2:
            raise ConfigError(f"{source}: {key} needs 2 values, got {len(items)}")
        return items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping of options, got {value!r}")
        return dict(value)
    return _scalar(tp, value, key=key, source=source)


def _scalar(tp: Any, value: Any, *, key: str, source: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not _is_int(value):
            raise ConfigError(f"{source}: {key} must be a whole number, got {value!r}")
        return int(value)
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    return value


def _is_int(value: Any) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return False
        return True
    return False
