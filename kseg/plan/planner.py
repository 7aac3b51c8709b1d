"""Experiment planning for a CPU time budget: fingerprint -> probe -> a config that fits.

nnU-Net derives its recipe from the data fingerprint and the GPU memory; here the scarce resource
is CPU time, so the planner measures this machine's training speed for two networks (a few steps
each, under the precision ``train.precision: auto`` resolves to; the other candidates are priced
by their MACs between the two) and chooses the input size, width, depth, batch, epochs and
schedule whose measured cost fits the budget:

1. **Input size**: large enough that the smallest objects (10th percentile of equivalent
   diameters) span >= :data:`MIN_OBJECT_PX` pixels, at most the images' median shorter side and
   :data:`MAX_SIZE`; a multiple of 32.
2. **Epochs wanted**: enough passes to see ~:data:`TARGET_IMAGES` training images (30..200 epochs).
3. **Network**: ``unet`` depth 4, 16 filters (the CPU sweet spot of the zoo) at the largest size
   that reaches the wanted epochs; smaller networks when even the smallest size does not, wider
   ones when the budget leaves more than twice the wanted epochs.
4. **Budget arithmetic**: ``startup + epochs x (train + validation per epoch) + final scoring
   <= budget x (1 - margin)``, from the probes' seconds. The probes miss the input pipeline and
   scale imperfectly with size, so this epoch count is only the first guess: the config carries
   ``train.budget_minutes`` and the run re-fits the count from its own epoch times
   (``kseg.training.budget``).
5. **Up-sampling** (``--target``): each mode converted to INT8 and its latency estimated on the
   device profile; the fastest wins. Without a target: transposed convolution (on this project's
   CPU the three modes measured within 4 %, docs/benchmarks.md; on NPUs it is the fast one).

Reference: Isensee et al., "nnU-Net", Nature Methods 18, 2021 (experiment planning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from kseg._attrs import dataclass_dict
from kseg.config import Config, from_dict
from kseg.errors import ConfigError

MIN_OBJECT_PX = 16  #: the 10th-percentile object must span at least this many input pixels
#: thin structures (vessels) must stay at least this wide; narrower ones vanish when resized
MIN_WIDTH_PX = 3.0
MAX_SIZE = 256  #: CPU training above this rarely pays within a budget of minutes
#: several classes: the largest whole-image size, unless the objects need more. On usgra (25-min
#: plans, 163 training images, 3 seeds paired on one split) 224 px with the ~100 epochs it fits beat
#: 256 px with ~79 (still under-trained at the end) in every seed; 192 px with 130 was no better
MULTI_CLASS_MAX_SIZE = 224
MIN_SIZE = 96
TARGET_IMAGES = 12000  #: training images to see (epochs x training images)
#: the epochs wanted are clamped to this range; the budget, not MAX_EPOCHS, limits the run
MIN_EPOCHS, MAX_EPOCHS = 30, 200
PATCH_FOREGROUND = 0.5  #: share of training patches centred on a foreground pixel
MAX_CLASS_WEIGHT = 5.0  #: cross-entropy weight of the rarest class at most (background: 1)
#: class-weighted cross-entropy for several classes (see choose_loss): on usgra (128 px, 14 epochs,
#: one window of time) mean validation Dice 0.565 with it, 0.538 without, 0.494 with the Dice
#: over all classes (background included)
USE_CLASS_WEIGHTS = True
#: regularisation of several-class plans (few images of small structures overfit): AdamW's
#: decoupled weight decay, dropout in the bottleneck and decoder, stronger zoom-in crops
MULTI_CLASS_REGULARISATION = {
    "weight_decay": 0.02,
    "dropout": 0.1,
    "crop_p": 0.6,
    "crop_scale": [0.5, 1.0],
}
MARGIN = 0.08  #: share of the budget held back for what the probe cannot see
#: networks in order of preference when the budget is short (first = default choice)
NETS: tuple[tuple[int, int], ...] = ((4, 16), (3, 16), (3, 8))
#: several classes: the default network, at the smallest size the objects allow when the budget
#: is short. On usgra (25-min budget runs side by side on the loaded machine, 192 px) depth 3 with
#: 8 filters reached validation Dice 0.46 in 27 epochs, depth 4 with 16 filters 0.63 in 30: its
#: epochs were no slower there (the input pipeline, not the convolutions, dominated)
MULTI_CLASS_NETS: tuple[tuple[int, int], ...] = ((4, 16),)
#: wider networks tried when the default leaves more than twice the wanted epochs
WIDER: tuple[tuple[int, int], ...] = ((4, 32), (4, 24))


@dataclass(frozen=True)
class Probe:
    """Measured seconds per image of one network at one input size on this machine."""

    depth: int
    filters: int
    size: int
    train_s_per_image: float
    eval_s_per_image: float
    startup_s: float

    def scaled(self, size: int) -> Probe:
        """The same network at ``size``: convolution cost grows with the pixel count."""
        k = (size / self.size) ** 2
        return Probe(
            self.depth,
            self.filters,
            size,
            self.train_s_per_image * k,
            self.eval_s_per_image * k,
            self.startup_s,
        )


@dataclass
class Plan:
    """The chosen recipe, its cost arithmetic and the reasons (``to_yaml`` writes the config)."""

    config: Config
    fingerprint: dict[str, Any]
    budget_minutes: float
    estimate: dict[str, float]
    reasons: dict[str, str]
    probes: list[dict[str, Any]] = field(default_factory=list)
    upsampling: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"
    classes: dict[str, Any] = field(default_factory=dict)  #: :func:`class_profile`
    #: per config section, the keys the plan set (``to_yaml`` writes these; the rest are defaults)
    set_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from kseg.config import to_dict

        return {
            **dataclass_dict(self, exclude=("config", "fingerprint", "set_keys")),
            "fingerprint": self.fingerprint,
            "config": to_dict(self.config),
        }


# ------------------------------------------------------------------------------ arithmetic


class SizeChoice(NamedTuple):
    """Input sizes the data allows, and whether the training samples are native patches."""

    smallest: int
    largest: int
    why: str
    patch: bool = False


def choose_size(fp: dict[str, Any], classes: dict[str, Any] | None = None) -> SizeChoice:
    """The input sizes (multiples of 32) the data allows, or native-resolution patches.

    Whole images are resized so that the smallest objects (10th percentile of equivalent
    diameters, of the smallest class) span >= :data:`MIN_OBJECT_PX` pixels and thin structures
    (each class's median width, ``2 x area / boundary pixels``) stay >= :data:`MIN_WIDTH_PX`
    wide, at most the images' median shorter side and :data:`MAX_SIZE` (for several classes
    whose objects allow it, :data:`MULTI_CLASS_MAX_SIZE`). When even :data:`MAX_SIZE` shrinks
    them below that, the training samples become windows of the images
    at native resolution (``data.sampling: patch``) of the largest size, and inference tiles.
    """
    short = min(fp["height"]["median"], fp["width"]["median"])
    largest = max(MIN_SIZE, min(MAX_SIZE, int(short) // 32 * 32))
    per_class = (classes or {}).get("classes") or {}
    d10_px = [c["object_px"]["p10"] for c in per_class.values() if c["object_px"]["p10"] > 0]
    widths = [c["width_px"]["median"] for c in per_class.values() if c["width_px"]["median"] > 0]
    if d10_px:
        d10 = min(d10_px) / short
    else:
        d10 = fp["object_diameter"]["p10"] or fp["object_diameter"]["median"]
    scale = MIN_OBJECT_PX / (d10 * short) if d10 > 0 else 0.0
    thin = ""
    if widths:
        scale_w = MIN_WIDTH_PX / min(widths)
        thin = (
            f"; thinnest class {min(widths):.1f} px wide (median) needs a scale >= {scale_w:.2f} "
            f"to stay {MIN_WIDTH_PX:g} px wide"
        )
        scale = max(scale, scale_w)
    need = MIN_SIZE if scale <= 0 else math.ceil(scale * short / 32) * 32
    why = (
        f"smallest objects (p10 diameter {100 * d10:.1f} % of the shorter side) need >= "
        f"{math.ceil(MIN_OBJECT_PX / d10 / 32) * 32 if d10 > 0 else MIN_SIZE} px to span "
        f"{MIN_OBJECT_PX} px{thin}; images' median shorter side {short:.0f} px, CPU cap {MAX_SIZE}"
    )
    if need > largest and short > MAX_SIZE:  # the CPU cap, not rounding to 32, shrinks them
        why += (
            f": resizing to {largest} px would shrink them below that, so the model trains on "
            f"{largest} px windows at native resolution (data.sampling: patch) and infers tiled"
        )
        return SizeChoice(largest, largest, why, patch=True)
    if (classes or {}).get("multi_class") and need <= MULTI_CLASS_MAX_SIZE < largest:
        largest = MULTI_CLASS_MAX_SIZE
        why += (
            f"; several classes: at most {largest} px (more epochs rather than more pixels: on "
            "usgra 224 px beat 256 px in every seed)"
        )
    smallest = min(max(MIN_SIZE, need), largest)
    return SizeChoice(smallest, largest, why)


def wanted_epochs(n_train: int) -> int:
    """Epochs to see about :data:`TARGET_IMAGES` images, clamped to [30, 200]."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_IMAGES / max(n_train, 1)))))


def epoch_seconds(probe: Probe, n_train: int, n_val: int) -> float:
    return n_train * probe.train_s_per_image + n_val * probe.eval_s_per_image


def fit_epochs(
    probe: Probe, n_train: int, n_val: int, budget_s: float, *, load_s: float = 0.0
) -> tuple[int, dict[str, float]]:
    """How many epochs fit ``budget_s`` and the cost breakdown (seconds).

    ``startup + load + epochs * epoch + final <= budget * (1 - MARGIN)``; the final scoring is one
    more pass over the validation images plus 10 s of plots and checkpoint rewriting.
    """
    per_epoch = epoch_seconds(probe, n_train, n_val)
    final = n_val * probe.eval_s_per_image + 10.0
    fixed = probe.startup_s + load_s + final
    usable = budget_s * (1.0 - MARGIN) - fixed
    # no MAX_EPOCHS cap: a capped guess hid that the budget leaves room for a wider network
    epochs = max(0, int(usable // per_epoch) if per_epoch > 0 else 0)
    return epochs, {
        "epoch_s": per_epoch,
        "fixed_s": fixed,
        "train_s": epochs * per_epoch,
        "total_s": fixed + epochs * per_epoch,
        "budget_s": budget_s,
    }


def choose_recipe(
    probes: dict[tuple[int, int], Probe],
    sizes: tuple[int, int],
    n_train: int,
    n_val: int,
    budget_s: float,
    *,
    load_s: float = 0.0,
    nets: tuple[tuple[int, int], ...] = NETS,
    measure: Callable[[int, int, int], Probe] | None = None,
) -> tuple[Probe, int, dict[str, float], str]:
    """Pick ``(network at a size, epochs, cost, why)`` from measured probes (see module doc).

    ``nets``: the networks to choose from, in order of preference (the last is the fallback
    when none reaches the wanted epochs); :data:`MULTI_CLASS_NETS` for several classes.

    ``measure(depth, filters, size)``: time a wider network at the chosen size before widening.
    The small probes cannot price width: at 96 px a step is mostly fixed cost, so 32 filters
    probed as fast as 16 (usgra, 50 min: "widened to 32 filters, 135 epochs" at 20 s per epoch
    ran 47 s per epoch, 60 epochs). The run re-fits the epoch count from its own epoch times, but
    not the network, so a widening is only taken on a measured time.
    """
    want = wanted_epochs(n_train)
    smallest, largest = sizes
    grid = list(range(largest, smallest - 1, -32)) or [smallest]
    for depth, filters in nets:
        base = probes.get((depth, filters))
        if base is None:
            continue
        for size in grid:
            p = base.scaled(size)
            epochs, cost = fit_epochs(p, n_train, n_val, budget_s, load_s=load_s)
            if epochs >= want:
                why = (
                    f"unet depth {depth}, {filters} filters at {size} px reaches the {want} "
                    f"epochs wanted ({epochs} fit)"
                )
                if (depth, filters) == nets[0] and size == largest and epochs >= 2 * want:
                    tried = []
                    for wd, wf in WIDER:
                        wide = probes.get((wd, wf))
                        if wide is None:
                            continue
                        wp = measure(wd, wf, size) if measure else wide.scaled(size)
                        we, wc = fit_epochs(wp, n_train, n_val, budget_s, load_s=load_s)
                        how = f"measured at {size} px" if measure else "estimated"
                        if we >= want:
                            return (
                                wp,
                                we,
                                wc,
                                (
                                    f"the budget leaves {epochs} epochs for 16 filters (> 2x the {want} "
                                    f"wanted): widened to {wf} filters, {we} epochs "
                                    f"({wc['epoch_s']:.1f} s per epoch {how})"
                                ),
                            )
                        tried.append(f"{wf} filters {wc['epoch_s']:.0f} s per epoch {how}: {we}")
                    if tried:
                        why += (
                            f"; not widened: {'; '.join(tried)} epochs, fewer than the {want} "
                            "wanted"
                        )
                return p, epochs, cost, why
    # nothing reaches the wanted epochs: the cheapest network at the smallest size, as many as fit
    depth, filters = next(net for net in reversed(nets) if net in probes)
    p = probes[(depth, filters)].scaled(smallest)
    epochs, cost = fit_epochs(p, n_train, n_val, budget_s, load_s=load_s)
    if epochs < 1:
        raise ConfigError(
            f"a budget of {budget_s / 60:.1f} min does not fit one epoch of the smallest network "
            f"({cost['epoch_s']:.0f} s per epoch + {cost['fixed_s']:.0f} s fixed); raise "
            "--budget-minutes"
        )
    return (
        p,
        epochs,
        cost,
        (
            f"short budget: even the cheapest network{' for several classes' if nets != NETS else ''} "
            f"(depth {depth}, {filters} filters) at {smallest} px fits only {epochs} of the "
            f"{want} epochs wanted"
        ),
    )


# ------------------------------------------------------------------------------ measuring


def probe_speed(
    depth: int,
    filters: int,
    size: int,
    channels: int,
    batch: int,
    *,
    policy: str = "float32",
    steps: int = 4,
) -> Probe:
    """Median time of ``steps`` training steps (after one untimed) and of three evaluation batches
    of ``unet``, per image."""
    from kseg._keras import keras, tf
    from kseg.losses import get_loss
    from kseg.metrics import default_metrics
    from kseg.models import create_model
    from kseg.training.precision import precision_policy

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, channels)).astype(np.float32)
    y = (rng.random((batch, size, size, 1)) > 0.7).astype(np.float32)
    started = time.perf_counter()
    with precision_policy(policy):
        model = create_model(
            "unet", input_shape=(size, size, channels), depth=depth, filters=filters
        )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("combo"), metrics=default_metrics()
    )
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # one predict function per probed model is expected, not a retrace bug
    steps_s: list[float] = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            steps_s.append(time.perf_counter() - self.t0)

    try:
        model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
        model.predict(x, batch_size=batch, verbose=0)
        startup = time.perf_counter() - started
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[StepTimes()])
        evals = []
        for _ in range(3):
            t0 = time.perf_counter()
            model.predict(x, batch_size=batch, verbose=0)
            evals.append(time.perf_counter() - t0)
    finally:
        logger.setLevel(level)
        keras.backend.clear_session()
    # medians: a step the scheduler took away from us does not decide the plan
    train = float(np.median(steps_s)) / batch
    evaluate = float(np.median(evals)) / batch
    return Probe(depth, filters, size, train, evaluate, startup)


def unet_macs(depth: int, filters: int, size: int, channels: int) -> int:
    """Multiply-accumulates of one ``unet`` forward pass (from the Keras graph)."""
    from kseg._keras import keras
    from kseg.models import create_model
    from kseg.models.complexity import count_macs

    model = create_model("unet", input_shape=(size, size, channels), depth=depth, filters=filters)
    macs = count_macs(model)
    keras.backend.clear_session()
    return macs


def measure_probes(
    channels: int, batch: int, *, policy: str, steps: int = 4, log=print
) -> dict[tuple[int, int], Probe]:
    """Probe the cheapest and the default network; the others by their MACs in between.

    Time per image is close to linear in MACs for one architecture family (a fixed cost per
    step plus the convolutions), so two measured points give a line that prices the rest without
    spending a probe (build, trace, steps) on each.
    """
    measured = {}
    for depth, filters in (NETS[0], NETS[-1]):
        log(f"probing unet depth {depth}, {filters} filters at {MIN_SIZE} px ...")
        measured[(depth, filters)] = probe_speed(
            depth, filters, MIN_SIZE, channels, batch, policy=policy, steps=steps
        )
    macs = {net: unet_macs(*net, MIN_SIZE, channels) for net in (*NETS, *WIDER)}
    return interpolate_probes(measured, macs)


def interpolate_probes(
    measured: dict[tuple[int, int], Probe], macs: dict[tuple[int, int], int]
) -> dict[tuple[int, int], Probe]:
    """Fill in every network of ``macs`` from two measured probes, linearly in MACs."""
    (a, pa), (b, pb) = sorted(measured.items(), key=lambda kv: macs[kv[0]])
    span = max(macs[b] - macs[a], 1)
    # more MACs never cost less: on a noisy machine the larger probe can measure faster
    pb = Probe(
        pb.depth,
        pb.filters,
        pb.size,
        max(pb.train_s_per_image, pa.train_s_per_image),
        max(pb.eval_s_per_image, pa.eval_s_per_image),
        pb.startup_s,
    )
    out = dict(measured)
    for net, m in macs.items():
        if net in out:
            continue
        t = (m - macs[a]) / span

        def lerp(x: float, y: float, t: float = t) -> float:
            return x + (y - x) * t

        out[net] = Probe(
            net[0],
            net[1],
            pa.size,
            lerp(pa.train_s_per_image, pb.train_s_per_image),
            lerp(pa.eval_s_per_image, pb.eval_s_per_image),
            max(pa.startup_s, pb.startup_s),
        )
    return out


def choose_upsampling(
    target: str, depth: int, filters: int, size: int, channels: int
) -> dict[str, Any]:
    """Estimated INT8 latency of each up-sampling mode on device profile ``target``."""
    import tempfile
    from pathlib import Path

    from kseg.bench.analyze import analyze_model
    from kseg.bench.devices import load_profile
    from kseg.bench.npu import emulate
    from kseg.export import convert_model
    from kseg.models import create_model
    from kseg.models.options import Upsampling

    profile = load_profile(target)
    rep = np.random.default_rng(0).uniform(0, 255, (4, size, size, channels)).astype(np.float32)
    est = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in Upsampling.values():
            model = create_model(
                "unet",
                input_shape=(size, size, channels),
                depth=depth,
                filters=filters,
                upsampling=mode,
            )
            path = Path(tmp) / f"{mode}.tflite"
            path.write_bytes(convert_model(model, "int8", representative=rep))
            est[mode] = emulate(analyze_model(path), profile).to_dict()["estimated_latency_ms"][
                "total"
            ]
    best = min(est, key=est.get)
    return {"target": profile.name, "estimated_ms": est, "choice": best}


def _width_px(region: np.ndarray) -> float:
    """Width of a structure in pixels: ``2 x area / boundary pixels`` (a w-px wide band gives
    ~w, a disc of diameter D gives D/2; a 1-px line gives 2)."""
    import cv2

    area = int(region.sum())
    if area == 0:
        return 0.0
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0)
    return 2.0 * area / max(area - int(inner.sum()), 1)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p10": 0.0, "median": 0.0}
    return {"p10": float(np.percentile(values, 10)), "median": float(np.median(values))}


def class_profile(
    path: str,
    *,
    group_regex: str | None = None,
    classes: dict[str, Any] | None = None,
    merge_classes: bool = False,
    max_images: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """Which classes the masks hold and how large, frequent and thin each one is.

    The classes are ``classes`` (``data.classes``: name -> id or colour) when given, else the
    foreground labels the folder's masks hold (:func:`kseg.data.classes.folder_classes`: palette
    indices, grey ids, colours), named ``class_1``, ``class_2``, ... in label order; one label
    (or ``merge_classes``) is a binary ``foreground``.

    Returns:
        ``{"multi_class", "kind", "table": {name: id or [R, G, B]} (multi-class only),
        "classes": {name: {"label", "images_fraction", "pixel_share", "objects_per_image",
        "object_px": {"p10", "median"}, "width_px": {"p10", "median"}}}}``: object sizes are
        equivalent diameters of 8-connected components and widths ``2 x area / boundary``, both
        in native pixels.
    """
    import cv2

    from kseg.data.classes import folder_classes, label_keys, summarize_mask
    from kseg.data.folder import scan_folder
    from kseg.data.io import mask_to_ids, read_stored_mask

    samples = [s for s in scan_folder(path, group_regex=group_regex) if s.mask is not None]
    if not samples:
        raise ConfigError(f"{path}: no masks to plan classes for")
    rng = np.random.default_rng(seed)
    if len(samples) > max_images:
        samples = [samples[i] for i in sorted(rng.choice(len(samples), max_images, replace=False))]
    stored = [(s.mask, read_stored_mask(s.mask)) for s in samples]  # type: ignore[union-attr]
    kind = stored[0][1].kind
    by_table = bool(classes)
    if classes:
        table = {n: (v if isinstance(v, int) else list(v)) for n, v in classes.items()}
        labels = {n: i + 1 for i, n in enumerate(table)}  # model class ids (mask_to_ids)
        multi = len(table) >= 2 and not merge_classes
    else:
        found = folder_classes([(p.name, summarize_mask(m)) for p, m in stored])
        kind = found["kind"]
        ids = [int(i) for i in found["ids"]]
        multi = bool(found["multi_class"]) and len(ids) >= 2 and not merge_classes
        table = {}
        labels = {}
        if multi:
            for i, k in enumerate(ids):
                name = f"class_{i + 1}"
                table[name] = k if kind != "colour" else [k >> 16, (k >> 8) & 255, k & 255]
                labels[name] = k
    if not multi:
        labels = {"foreground": None}  # every non-zero label
    stats: dict[str, dict[str, list[float]]] = {
        n: {"present": [], "pixels": [], "objects": [], "width": []} for n in labels
    }
    total_px = 0
    for mask_path, m in stored:
        if by_table and multi:  # the table's ids, colours or palette colours -> class ids
            keys = mask_to_ids(m, mask_path, len(table) + 1, classes)
        else:
            keys = (m.values >= 128) if m.kind == "lossy" else label_keys(m)
        total_px += keys.shape[0] * keys.shape[1]
        for name, label in labels.items():
            region = (keys != 0) if label is None else (keys == label)
            area = int(region.sum())
            if area == 0:
                continue
            n, _, comp, _ = cv2.connectedComponentsWithStats(
                region.astype(np.uint8), connectivity=8
            )
            areas = comp[1:n, cv2.CC_STAT_AREA]
            st = stats[name]
            st["present"].append(1)
            st["pixels"].append(area)
            st["objects"] += [float(2.0 * np.sqrt(a / np.pi)) for a in areas]
            st["width"].append(_width_px(region))
    out = {}
    for name, st in stats.items():
        present = len(st["present"])
        out[name] = {
            "label": table.get(name),
            "images_fraction": round(present / len(stored), 4),
            "pixel_share": round(float(sum(st["pixels"])) / max(total_px, 1), 5),
            "objects_per_image": round(len(st["objects"]) / max(present, 1), 3),
            "object_px": _quantiles(st["objects"]),
            "width_px": _quantiles(st["width"]),
        }
    return {"multi_class": multi, "kind": kind, "table": table if multi else {}, "classes": out}


def class_weights(profile: dict[str, Any]) -> list[float] | None:
    """Cross-entropy weights (background first) that lift rare classes: ``1 / sqrt(share)``
    relative to the background's, capped at :data:`MAX_CLASS_WEIGHT`; ``None`` for binary."""
    if not profile["multi_class"]:
        return None
    shares = [c["pixel_share"] for c in profile["classes"].values()]
    bg = max(1.0 - sum(shares), 1e-6)
    return [1.0] + [round(min(MAX_CLASS_WEIGHT, math.sqrt(bg / max(sh, 1e-6))), 2) for sh in shares]


def _load_seconds(path: str, n: int, sample: int = 8) -> float:
    """Seconds to decode and resize all ``n`` images, from timing ``sample`` of them."""
    from kseg.data.folder import scan_folder
    from kseg.data.io import read_image, read_mask

    samples = scan_folder(path)[:sample]
    t0 = time.perf_counter()
    for s in samples:
        read_image(s.image, 1)
        read_mask(s.mask)
    per = (time.perf_counter() - t0) / max(len(samples), 1)
    return per * n * 1.5  # resizing and splitting on top of decoding


def plan(
    path: str,
    budget_minutes: float,
    *,
    target: str | None = None,
    group_regex: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 42,
    probe_steps: int = 4,
    probes: dict[tuple[int, int], Probe] | None = None,
    include_planning: bool = False,
    classes: dict[str, Any] | None = None,
    merge_classes: bool = False,
    log=print,
) -> Plan:
    """Fingerprint ``path``, probe this machine, and return the :class:`Plan` for the budget.

    Args:
        budget_minutes: wall-clock minutes for the whole ``kseg train`` run.
        target: device profile name or YAML (``kseg bench --npu`` names) to pick up-sampling for.
        probes: measured probes to use instead of measuring (tests, re-planning).
        include_planning: the budget also pays for this planning (``kseg train --budget``).
        classes: ``data.classes`` (name -> id or colour) when the user gave it; else the classes
            are found in the masks (:func:`class_profile`).
        merge_classes: ``data.merge_classes``: plan one foreground whatever the masks hold.
    """
    started = time.perf_counter()
    from kseg.plan.fingerprint import fingerprint
    from kseg.training.precision import resolve_precision

    if budget_minutes <= 0:
        raise ConfigError(f"--budget-minutes {budget_minutes}: use a positive number of minutes")
    table_source = "data.classes as given"
    if not classes and not merge_classes:  # names stored with the data, as kseg train reads them
        from kseg.data.classes import read_class_table

        found = read_class_table(path)
        if found is not None:
            classes, table_source = found[0], f"{found[1].name} in the data folder"
    fp = fingerprint(path, group_regex=group_regex, classes=classes or None)
    profile = class_profile(
        path, group_regex=group_regex, classes=classes, merge_classes=merge_classes
    )
    profile["source"] = table_source if classes else f"the {profile['kind']} labels the masks hold"
    multi = profile["multi_class"]
    n = fp["n_images"]
    n_val = max(1, round(n * val_fraction))
    n_train = n - n_val
    channels = fp["channels"]
    batch = 8 if n_train >= 64 else 4
    sizes = choose_size(fp, profile)
    # patches: an epoch draws about one image's area of windows per training image, and the
    # validation scores every tile of its images; the arithmetic counts windows, not images
    per_train = per_val = 1
    if sizes.patch:
        h, w, s_ = fp["height"]["median"], fp["width"]["median"], sizes.largest
        per_train = max(1, round(h * w / (s_ * s_)))
        per_val = math.ceil(h / s_) * math.ceil(w / s_)
    precision = resolve_precision("auto")
    measure: Callable[[int, int, int], Probe] | None = None
    timed: list[Probe] = []  # networks timed at their chosen size (plan.json's probes)
    if probes is None:
        probes = measure_probes(
            channels, batch, policy=precision.policy, steps=probe_steps, log=log
        )

        def measure_wider(depth: int, filters: int, size: int) -> Probe:
            log(f"probing unet depth {depth}, {filters} filters at {size} px (wider network) ...")
            timed.append(
                probe_speed(
                    depth,
                    filters,
                    size,
                    channels,
                    batch,
                    policy=precision.policy,
                    steps=probe_steps,
                )
            )
            return timed[-1]

        measure = measure_wider
    load_s = _load_seconds(path, n)
    budget_s = budget_minutes * 60.0 - (time.perf_counter() - started if include_planning else 0.0)
    chosen, epochs, cost, net_why = choose_recipe(
        probes,
        (sizes.smallest, sizes.largest),
        n_train * per_train,
        n_val * per_val,
        budget_s,
        load_s=load_s,
        nets=MULTI_CLASS_NETS if multi else NETS,
        measure=measure,
    )
    if multi:
        net_why += (
            "; several classes: no smaller network than depth 4, 16 filters (on usgra, side by "
            "side in 25 minutes at 192 px, depth 3 with 8 filters reached validation Dice 0.46, "
            "depth 4 with 16 filters 0.63; its epochs were no slower)"
        )
    up = {"choice": "transpose", "why": "no --target: transposed conv (CPU modes within 4 %)"}
    if target:
        up = choose_upsampling(target, chosen.depth, chosen.filters, chosen.size, channels)
        up["why"] = f"fastest INT8 estimate on {up['target']}: " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in up["estimated_ms"].items()
        )
    warmup = 2 if epochs >= 60 else 1
    loss, loss_options, loss_why = choose_loss(profile)
    data: dict[str, Any] = {
        "path": str(path),
        "img_size": chosen.size,
        "channels": channels,
        "val_fraction": val_fraction,
        "group_regex": group_regex,
        "mean": fp["intensity"]["mean"],
        "std": [max(s, 1e-3) for s in fp["intensity"]["std"]],
    }
    if multi:
        data["classes"] = profile["table"]
    elif classes:
        data["classes"] = classes
        data["merge_classes"] = merge_classes if len(classes) > 1 else False
    if merge_classes and not classes:
        data["merge_classes"] = True
    if sizes.patch:
        data["sampling"] = "patch"
        data["patch_foreground"] = PATCH_FOREGROUND
    raw = {
        "data": data,
        "model": {
            "name": "unet",
            "options": {
                "depth": chosen.depth,
                "filters": chosen.filters,
                "upsampling": up["choice"],
            },
        },
        "train": {
            "epochs": epochs,
            "batch_size": batch,
            "learning_rate": 0.002 if batch >= 8 else 0.001,
            "schedule": "cosine",
            "warmup_epochs": warmup,
            "early_stopping_patience": epochs,
            "seed": seed,
            "precision": "auto",
            "budget_minutes": budget_minutes,
            "loss": loss,
            "loss_options": loss_options,
        },
    }
    if multi:
        reg = MULTI_CLASS_REGULARISATION
        raw["train"] |= {"optimizer": "adamw", "weight_decay": reg["weight_decay"]}
        raw["model"]["options"]["dropout"] = reg["dropout"]
        data["augment"] = {"crop_p": reg["crop_p"], "crop_scale": reg["crop_scale"]}
    config = from_dict(raw, source="kseg plan")
    what = "windows" if sizes.patch else "images"
    reasons = {
        "data.img_size": sizes.why + f"; {chosen.size} px chosen",
        "data.channels": "all images are gray" if channels == 1 else "colour images",
        "data.mean": "z-score from the fingerprint's intensity statistics (pixel/255)",
        "model.options": net_why,
        "model.options.upsampling": up["why"],
        "train.epochs": (
            f"{cost['epoch_s']:.1f} s per epoch probed ({n_train * per_train} train + "
            f"{n_val * per_val} val {what}) x {epochs} = {cost['train_s'] / 60:.1f} min + "
            f"{cost['fixed_s'] / 60:.1f} min fixed <= {budget_minutes:g} min - "
            f"{100 * MARGIN:.0f} % margin; a first guess: the run re-fits it from its own epoch "
            "times (train.budget_minutes), with no epoch cap"
        ),
        "train.batch_size": f"{batch}: fast on CPU, {'>= 64' if batch == 8 else '< 64'} training images",
        "train.schedule": "cosine with warm-up: the epoch count is known in advance",
        "train.early_stopping_patience": "= epochs: the cosine schedule needs its full length",
        "train.precision": f"auto -> {precision.policy} here ({precision.reason})",
        "train.budget_minutes": (
            "the whole command's wall-clock budget: after every epoch from the second on, the run "
            "prices the rest by its last epochs and sets the epoch count and cosine length to end "
            "within it (no epoch cap: the budget is used); it stops early if the machine gets "
            "slower"
        ),
        "train.loss": loss_why,
    }
    reasons["data.classes"] = _classes_why(profile, merge_classes)
    if multi:
        why_reg = (
            "several small classes in few images overfit (usgra, 25 min at 224 px: training Dice "
            "0.84 against 0.67 on validation); with AdamW weight decay 0.02, dropout 0.1 and "
            "zoom-in crops (p 0.6, scale 0.5-1) the same run scored nerve 0.673 / vessel 0.737 "
            "against 0.613 / 0.754 (class mean +0.02, best and last checkpoints agreeing)"
        )
        reasons["train.optimizer"] = "adamw: decoupled weight decay; " + why_reg
        reasons["train.weight_decay"] = "see train.optimizer"
        reasons["data.augment"] = "stronger zoom-in crops; see train.optimizer"
        net_why += f"; dropout {reg['dropout']:g} (see train.optimizer)"
        reasons["model.options"] = net_why
    if sizes.patch:
        reasons["data.sampling"] = (
            f"patch: {per_train} window(s) of {chosen.size} px per training image and epoch, "
            f"validation on the {per_val} tiles of each validation image; see data.img_size"
        )
        reasons["data.patch_foreground"] = (
            f"{100 * PATCH_FOREGROUND:.0f} % of the windows centred on a pixel of a class drawn "
            "uniformly among those the image holds: rare and thin classes are seen as often as "
            "common ones"
        )
    estimate = {
        "minutes": cost["total_s"] / 60.0,
        "epoch_seconds": cost["epoch_s"],
        "fixed_seconds": cost["fixed_s"],
        "wanted_epochs": wanted_epochs(n_train * per_train),
        "n_train": n_train,
        "n_val": n_val,
    }
    return Plan(
        config=config,
        fingerprint=fp,
        budget_minutes=budget_minutes,
        estimate=estimate,
        reasons=reasons,
        probes=[vars(p) for p in (*probes.values(), *timed)],
        upsampling=up,
        precision=precision.policy,
        classes=profile,
        set_keys={"data": tuple(data), "train": tuple(raw["train"])},
    )


def choose_loss(profile: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(loss, loss_options, why)`` for the classes of :func:`class_profile`.

    One class: the default ``combo`` (cross-entropy + Dice). Several: ``combo`` of class-weighted
    cross-entropy (:func:`class_weights`) and a Dice over the foreground classes only.
    """
    if not profile["multi_class"]:
        return "combo", {}, "cross-entropy + Dice (combo): the default for one foreground class"
    shares = ", ".join(
        f"{name} {100 * c['pixel_share']:.1f} %" for name, c in profile["classes"].items()
    )
    options: dict[str, Any] = {
        "first": "bce",
        "second": "dice",
        "weight": 0.5,
        "second_options": {"include_background": False},
    }
    why = (
        f"several small classes (pixel shares {shares}): cross-entropy + Dice over the "
        "foreground classes only (nnU-Net's choice), so the easy background does not dilute "
        "the Dice term of the rare classes"
    )
    if USE_CLASS_WEIGHTS:
        weights = class_weights(profile)
        options["first_options"] = {"class_weights": weights}
        why += (
            f"; cross-entropy class weights {weights} (sqrt of background/class pixel share, "
            f"at most {MAX_CLASS_WEIGHT:g}): on usgra in one window of time, mean validation Dice "
            "0.565 with both, 0.538 with the foreground Dice alone, 0.494 with the Dice over "
            "all classes"
        )
    return "combo", options, why


def _classes_why(profile: dict[str, Any], merge: bool) -> str:
    names = list(profile["classes"])
    if merge:
        return "data.merge_classes: every foreground label is one class (binary)"
    if not profile["multi_class"]:
        return "the masks hold one foreground class (binary model)"
    present = ", ".join(
        f"{n} in {100 * c['images_fraction']:.0f} % of the images"
        for n, c in profile["classes"].items()
    )
    return (
        f"{len(names)} foreground classes from {profile['source']} ({present}): a "
        f"{len(names) + 1}-class softmax model (model.num_classes = {len(names) + 1})"
    )


def to_yaml(p: Plan) -> str:
    """The planned config as YAML whose comments give each chosen value's reason."""
    import yaml

    fp = p.fingerprint
    lines = [
        f"# kseg plan for {fp['path']} with a {p.budget_minutes:g}-minute CPU budget",
        f"# data: {fp['n_images']} images in {fp['n_groups']} groups, median "
        f"{fp['width']['median']:.0f}x{fp['height']['median']:.0f} px, {fp['channels']} channel(s), "
        f"foreground {100 * fp['foreground_fraction']['mean']:.1f} % of pixels, "
        f"{fp['objects_per_image']['median']:.0f} object(s) per image",
        f"# estimated run: {p.estimate['minutes']:.1f} min "
        f"({p.estimate['epoch_seconds']:.1f} s/epoch probed; the run re-fits its epochs to the budget)",
        "#   kseg train --config THIS_FILE --out runs/planned",
    ]
    for name, c in (p.classes.get("classes") or {}).items():
        lines.insert(
            -2,
            f"# class {name}: in {100 * c['images_fraction']:.0f} % of the images, "
            f"{100 * c['pixel_share']:.1f} % of the pixels, objects p10 {c['object_px']['p10']:.0f} px "
            f"across, {c['width_px']['median']:.1f} px wide (median)",
        )
    plain = {
        "data": _set_values(p, "data"),
        "model": _section(p.config.model),
        "train": _set_values(p, "train"),
    }
    for section, values in plain.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False).strip()
            text = text[1:-1] if text.startswith("{") else text
            why = p.reasons.get(f"{section}.{key}")
            if section == "model" and key == "num_classes" and value > 1:
                why = "background + the classes of data.classes"
            if section == "model" and key == "options":
                why = f"{p.reasons['model.options']}; upsampling: {p.reasons['model.options.upsampling']}"
            lines.append(f"  {text}" + (f"  # {why}" if why else ""))
    return "\n".join(lines) + "\n"


#: data keys written only when they differ from their default
_ONLY_IF_SET = {
    "classes": {},
    "merge_classes": False,
    "sampling": "resize",
    "patch_foreground": 0.5,
}


def _set_values(p: Plan, section: str) -> dict[str, Any]:
    """The keys of a config section the plan set, in the config's order, with their values (those
    of :data:`_ONLY_IF_SET` only where they differ from their default)."""
    return {
        k: v
        for k, v in _section(getattr(p.config, section)).items()
        if k in p.set_keys.get(section, ()) and (k not in _ONLY_IF_SET or v != _ONLY_IF_SET[k])
    }


def _section(obj: Any) -> dict[str, Any]:
    from kseg.config import _plain

    return {k: _plain(v) for k, v in vars(obj).items()}


__all__ = [
    "Plan",
    "Probe",
    "SizeChoice",
    "choose_loss",
    "class_profile",
    "class_weights",
    "choose_recipe",
    "choose_size",
    "choose_upsampling",
    "fit_epochs",
    "plan",
    "probe_speed",
    "measure_probes",
    "interpolate_probes",
    "to_yaml",
    "wanted_epochs",
]
