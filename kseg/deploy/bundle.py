"""``export_android``: a trained model -> a self-contained bundle an Android app can ship.

The bundle (see README.md inside one, e.g. ``android_demo_assets/hc18/``)::

    model.tflite       uint8 RGB in, per-class confidence out, batch 1, builtin ops only,
                       standard TFLite Model Metadata (+ labels.txt packed inside)
    model.json/.md     the kseg model card (parity gate, graph facts, bundle facts)
    metadata.json      the metadata as tflite-support's MetadataDisplayer reads it back
    labels.txt         one class name per output channel
    samples/           a few validation images at model resolution (RGB PNG) + ATTRIBUTION.md
    golden/            per sample: NAME.input.npy (the exact input tensor), NAME.output.npy (the
                       raw output tensor from LiteRT's default XNNPACK path), NAME.output_builtin.npy
                       (from TFLite's builtin kernels), NAME.mask.png (the mask: 0/255, or the
                       class index spread over 0..255 for K > 1); K > 1 also NAME.category.png,
                       the class id per pixel (0..K-1), which is MediaPipe's category mask
    bench.json         measured CPU latency and the Ethos-U estimate
    README.md          for the app developer
    manifest.json      sha256 and size of every other file

Everything is written to a temporary folder beside ``out`` and renamed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import KsegError, ModelError

BUNDLE_FORMAT = "kseg-android-bundle/1"
MANIFEST = "manifest.json"
DEFAULT_SAMPLES = 4
#: mask agreement with ``golden/NAME.mask.png`` a path that cannot reproduce ``output.npy`` bit for
#: bit must reach: TFLite's builtin kernels on arm64 (android_demo_assets: 0.9985 at worst), the gate
#: of tools/bundle_consumer_check.sh (tools/bundle_consumer.py ARM64_BUILTIN_MIN_AGREEMENT); on a
#: sample where x86-64's own builtin kernels agree less with that mask, their agreement less 0.002
#: (tools/bundle_consumer.py ARM64_SLACK; usgra's 3-class bundle: 0.9957 on its hardest sample)
ARM64_MIN_MASK_AGREEMENT = 0.998


class BundleExistsError(KsegError):
    """The output folder exists; kseg does not overwrite it silently."""


def resolve_model_path(model: str | os.PathLike[str]) -> Path:
    """A ``.keras``/``.h5`` file, or a run directory (its ``best.keras``)."""
    from kseg.training.rundir import RunDir

    path = Path(model)
    if path.is_dir():
        run = RunDir(path)
        if not run.best_model.is_file():
            raise KsegError(f"--model {path}: a folder must be a run directory with best.keras")
        return run.best_model
    if not path.is_file():
        raise KsegError(
            f"--model {path}: file not found (give a .keras/.h5 file or a run directory)"
        )
    if path.suffix not in (".keras", ".h5"):
        raise KsegError(f"--model {path}: expected a .keras or .h5 model or a run directory")
    return path


def export_android(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    mode: str = "int8",
    data: str | os.PathLike[str] | None = None,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
    max_dice_drop: float | None = None,
    bench_runs: int = 30,
    labels: list[str] | None = None,
    version: str = "1",
    description: str | None = None,
) -> dict[str, Any]:
    """Write the Android bundle of ``model`` to ``out``; returns the bundle summary (also in the card).

    Args:
        model: ``.keras``/``.h5`` segmentation model or its run directory.
        out: bundle folder (must not exist unless ``force``).
        mode: ``int8`` (uint8 in/out), ``fp16`` or ``float32`` (uint8 in, float32 out).
        data: calibration/parity data as in ``kseg convert`` (default: the model's run data).
        samples: validation images written to ``samples/`` and ``golden/``.
        bench_runs: timed interpreter runs for the README's latency (0: skip).
        labels: class names, one per output channel (default: the run configuration's
            :func:`kseg.config.class_names`, background first for K > 1 classes and the one
            class's name for a binary model; without a run: ``foreground`` or ``background``,
            ``class_1``, ...).
    """
    from kseg.deploy.camera import camera_model, check_exportable
    from kseg.deploy.metadata import writer_python
    from kseg.export.convert import Mode
    from kseg.models import load_model, model_spec
    from kseg.training.rundir import find_run_dir

    out = Path(out)
    mode = Mode(mode)
    if mode not in (Mode.INT8, Mode.FP16, Mode.FLOAT32):
        raise KsegError(f"mode {mode}: a bundle is int8, fp16 or float32")
    if out.exists() and not force:
        raise BundleExistsError(f"--out {out}: folder exists; choose another or pass --force")
    if samples < 1:
        raise KsegError(f"--samples {samples}: give at least 1")
    writer_python()  # fail before the conversion when the metadata writer is missing
    model_path = resolve_model_path(model)
    keras_model = load_model(model_path)
    check_exportable(keras_model, str(model_path))
    spec = model_spec(keras_model)
    channels = int(keras_model.input_shape[3])
    num_classes = int(keras_model.output_shape[-1])
    labels = list(labels) if labels else _default_labels(model_path, num_classes)
    if len(labels) != num_classes:
        raise KsegError(f"--labels: {len(labels)} names for {num_classes} output channels")
    if data is None and find_run_dir(model_path) is None and channels == 1:
        data = "synthetic:ultrasound:96"  # a 3-channel wrapper would otherwise get RGB phantoms

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        summary = _write_bundle(
            tmp,
            camera_model(keras_model),
            model_path,
            spec=spec,
            gray_source=channels == 1,
            mode=mode,
            data=data,
            samples=samples,
            max_dice_drop=max_dice_drop,
            bench_runs=bench_runs,
            labels=labels,
            version=version,
            description=description,
            started=t0,
        )
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["path"] = str(out)
    return summary


#: an absolute path: a ``/`` not inside a word, a number, a URL or another path, then its parts
_ABS_PATH = re.compile(r"""(?<![\w.:/~])/(?:[^\s:,;'"()\[\]/]+/)*([^\s:,;'"()\[\]/]+)""")


def public_paths(obj: Any) -> Any:
    """``obj`` with every absolute path in its strings cut to its last part.

    A bundle is handed to app developers and device vendors: a card saying the model was trained
    on ``/home/alice/patients-2024/...`` says too much, while the folder's name still tells a
    reader which data it was.

        >>> public_paths({"d": "run /tmp/runs/hc18-mobile: /data/scans/hc18 (80 images)"})
        {'d': 'run hc18-mobile: hc18 (80 images)'}
        >>> public_paths("see https://doi.org/10.5281/zenodo.1327317, 3/4 of the images")
        'see https://doi.org/10.5281/zenodo.1327317, 3/4 of the images'
    """
    if isinstance(obj, str):
        return _ABS_PATH.sub(r"\1", obj)
    if isinstance(obj, dict):
        return {k: public_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(public_paths(v) for v in obj)
    return obj


def _default_labels(model_path: Path, num_classes: int) -> list[str]:
    """One name per output channel: the run's class names (index = class id) for K > 1, the one
    foreground class's name for a binary model."""
    from kseg.inference.classes import default_class_names, run_class_names

    names = run_class_names(model_path, num_classes) or default_class_names(num_classes)
    return [names[1]] if num_classes == 1 else list(names)


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():  # --force: move the old bundle aside, put the new one in, then delete
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_bundle(
    tmp: Path,
    wrapped,
    model_path: Path,
    *,
    spec: dict[str, Any],
    gray_source: bool,
    mode,
    data,
    samples: int,
    max_dice_drop: float | None,
    bench_runs: int,
    labels: list[str],
    version: str,
    description: str | None,
    started: float,
) -> dict[str, Any]:
    from kseg.atomic import write_json, write_text
    from kseg.deploy.metadata import write_metadata
    from kseg.export.card import sha256_file, write_card
    from kseg.export.tflite import export_tflite

    tflite = tmp / "model.tflite"
    card = export_tflite(
        model_path,
        mode,
        data=data,
        out=tflite,
        io_dtype="uint8",
        max_dice_drop=max_dice_drop,
        model=wrapped,
    )
    # the parity review image is for the model's author (kseg convert keeps it), not the app
    Path(card["parity"].pop("review_png", tmp / "model.parity.png")).unlink(missing_ok=True)
    card = public_paths(card)  # the bundle leaves this machine: no /home/... or /data/... paths
    facts = card["tflite"]
    if not facts["builtin_only"]:
        raise ModelError(
            f"{model_path}: the converted graph has custom ops; a bundle needs builtin ops only"
        )
    if str(mode) == "int8" and facts["float_ops"]:
        raise ModelError(
            f"{model_path}: float ops left in the INT8 graph ({', '.join(facts['float_ops'][:4])}); "
            "export with --fp16 or --float32, or replace the float-only layer"
        )
    if card["input"]["dtype"] != "uint8" or card["input"]["shape"][-1] != 3:
        raise ModelError(f"{model_path}: bundle input is {card['input']}, expected uint8 RGB")
    write_text(tmp / "labels.txt", "\n".join(labels) + "\n")

    threshold = float(card["output"]["threshold"])
    name = spec.get("name", wrapped.name)
    checked = card["data"]
    # the data set's name, not the run folder's (public_paths cuts both to their last part)
    data_desc = (
        f"{checked.get('source', checked['description'])} "
        f"(checked on {checked['n_val']} held-out validation images)"
    )
    fields = {
        "name": f"kseg {name} segmentation",
        "version": version,
        "description": description
        or (
            f"{name} ({len(labels)} output channel(s): {', '.join(labels)}), trained with kseg on "
            f"{data_desc}. Input: uint8 RGB {card['input']['shape'][1]}x{card['input']['shape'][2]}"
            f", pixels as they are (normalization is inside the model). Output: per-class "
            f"confidence ({card['output']['activation']}); "
            + (
                f"mask = confidence > {threshold}."
                if len(labels) == 1
                else "class = argmax (0 = background)."
            )
            + " Research use only, not a medical device."
        ),
        "author": "kseg",
        "licenses": "Model: Apache-2.0 (kseg). Training data: see samples/ATTRIBUTION.md.",
        "input_description": "RGB image, uint8 [0, 255], resized (stretched) to the input size; "
        + ("converted to gray inside the model (BT.601 luma)." if gray_source else "used as RGB."),
        "output_description": f"Per-class confidence ({card['output']['activation']}) per pixel; "
        + (
            f"mask = confidence > {threshold} (one channel: the foreground)."
            if len(labels) == 1
            else "class = argmax over the channels (MediaPipe's category mask); channel i is "
            "labels.txt line i."
        ),
    }
    raw = tmp / "model.raw.tflite"
    os.replace(tflite, raw)
    meta = write_metadata(raw, tflite, tmp / "labels.txt", fields)
    raw.unlink()
    write_json(tmp / "metadata.json", meta)

    sample_rows = _write_samples(tmp, tflite, model_path, card, data, samples, threshold, labels)
    bench = _bench(tflite, bench_runs)
    write_json(tmp / "bench.json", bench)

    export_s = time.perf_counter() - started
    card["tflite"].update(
        path="model.tflite",
        sha256=sha256_file(tflite),
        size_bytes=tflite.stat().st_size,
        metadata=True,
    )
    card["size_bytes"] = tflite.stat().st_size
    card["bundle"] = {
        "format": BUNDLE_FORMAT,
        "rgb_to_gray_in_graph": gray_source,
        "labels": labels,
        "category_mask": len(labels) > 1,
        "metadata_writer": f"{meta['writer']} {meta['tflite_support']}",
        "samples": [r["name"] for r in sample_rows],
        "sample_classes": {r["name"]: r["classes"] for r in sample_rows},
        "golden_kernels": {
            "output.npy": "LiteRT default CPU path (XNNPACK): Android LiteRT, MediaPipe Tasks",
            "output_builtin.npy": "TFLite builtin kernels: tflite-runtime, LiteRT without delegates",
            "max_diff": max(r["builtin_max_diff"] for r in sample_rows),
            "min_mask_agreement": min(r["builtin_mask_agreement"] for r in sample_rows),
        },
        "export_seconds": round(export_s, 2),
    }
    write_card(card, tflite)
    write_text(tmp / "README.md", _readme(card, fields, sample_rows, bench, labels))
    manifest = write_manifest(tmp)
    return {
        "card": card,
        "bench": bench,
        "samples": sample_rows,
        "files": len(manifest["files"]),
        "bytes": sum(f["size_bytes"] for f in manifest["files"].values()),
        "export_seconds": export_s,
    }


def _write_samples(
    tmp, tflite, model_path, card, data, n, threshold, labels
) -> list[dict[str, Any]]:
    """Validation images at model resolution and the exact tensors LiteRT gives for them."""
    import cv2

    from kseg.data.pipeline import load_splits
    from kseg.inference import mask_to_png, prob_to_mask
    from kseg.runtime import open_model
    from kseg.runtime.model import dequantize
    from kseg.training.rundir import resolve_data

    size = int(card["input"]["shape"][1])
    resolved = resolve_data(model_path, size, 3, data)
    seed = resolved.config.train.seed if resolved.split_file is not None else 42
    val = load_splits(
        resolved.config.data,
        seed=seed,
        split_file=resolved.split_file,
        progress=False,
        num_classes=resolved.config.model.num_classes,
    ).val
    idx = np.unique(
        np.linspace(0, len(val.images) - 1, min(n, len(val.images))).round().astype(int)
    )
    # LiteRT's default CPU path (XNNPACK), which Android's LiteRT and MediaPipe Tasks also take,
    # and TFLite's builtin kernels (tflite-runtime 2.14, LiteRT without delegates): their int8
    # requantization rounds differently by one step on some elements, which grows over a deep net
    m = open_model(tflite, runtime="litert")
    ref = open_model(tflite, runtime="litert", delegate="none")
    (tmp / "samples").mkdir()
    (tmp / "golden").mkdir()
    rows = []
    for i in idx:
        name = Path(str(val.names[i])).stem
        image = np.ascontiguousarray(val.images[i].astype(np.uint8))  # (S, S, 3) RGB
        cv2.imwrite(str(tmp / "samples" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        x = image[None]
        raw, raw_ref = m.invoke_raw(x), ref.invoke_raw(x)
        prob = dequantize(raw, m.output_scale, m.output_zero_point)[0]
        mask = prob_to_mask(prob, threshold)
        mask_ref = prob_to_mask(
            dequantize(raw_ref, m.output_scale, m.output_zero_point)[0], threshold
        )
        np.save(tmp / "golden" / f"{name}.input.npy", x)
        np.save(tmp / "golden" / f"{name}.output.npy", raw)
        np.save(tmp / "golden" / f"{name}.output_builtin.npy", raw_ref)
        k = prob.shape[-1]
        cv2.imwrite(str(tmp / "golden" / f"{name}.mask.png"), mask_to_png(mask, k))
        if k > 1:  # the class id per pixel, as MediaPipe's ImageSegmenter gives its category mask
            cv2.imwrite(str(tmp / "golden" / f"{name}.category.png"), mask.astype(np.uint8))
        rows.append(
            {
                "name": name,
                "foreground": float((mask > 0).mean()),
                # fraction of the sample's pixels per class (K > 1: every class, background too)
                "classes": {
                    labels[c] if k > 1 else labels[0]: float((mask == (c if k > 1 else 1)).mean())
                    for c in range(k)
                },
                "builtin_max_diff": float(np.abs(raw.astype(np.float64) - raw_ref).max()),
                "builtin_mask_agreement": float((mask == mask_ref).mean()),
            }
        )
    _write_attribution(tmp / "samples" / "ATTRIBUTION.md", card, resolved)
    return rows


def _write_attribution(path: Path, card, resolved) -> None:
    from kseg.atomic import write_text

    folder = resolved.config.data.path
    lines = [
        "# Sample images: origin and licence",
        "",
        f"Data: {card['data']['description']}. The PNGs here are validation images resized "
        f"(stretch) to {card['input']['shape'][1]}x{card['input']['shape'][2]} and stored as RGB; "
        "golden/NAME.input.npy holds the same pixels as the model's input tensor.",
        "",
    ]
    readme = Path(folder) / "README.md" if folder else None
    if readme is not None and readme.is_file():
        lines += ["From the data set's README:", "", *[f"> {ln}" for ln in _credits(readme)], ""]
    elif folder:
        lines += [
            f"The data folder {folder} has no README.md: add its source and licence here.",
            "",
        ]
    else:
        lines += [
            "Synthetic phantoms generated by kseg (kseg.data.synthetic); no third-party data.",
            "",
        ]
    write_text(path, "\n".join(lines))


def _credits(readme: Path) -> list[str]:
    """The title and the ``Source:`` ... ``License:`` paragraph of a data set's README."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    keep = [ln for ln in lines[:1] if ln.startswith("# ")]
    inside = False
    for ln in lines:
        inside = inside or ln.startswith("Source:")
        if inside:
            keep.append(ln)
            if ln.startswith(("License:", "Licence:")) or not ln.strip():
                break
    return keep


def _bench(tflite: Path, runs: int) -> dict[str, Any]:
    """Measured CPU latency (kseg bench) and the Ethos-U figure (Vela when installed)."""
    from kseg.bench.analyze import analyze_model
    from kseg.bench.devices import load_profile
    from kseg.bench.latency import machine_info, measure
    from kseg.bench.npu import emulate

    result: dict[str, Any] = {"machine": machine_info(), "load_average_1min": os.getloadavg()[0]}
    if runs > 0:
        m = measure(tflite, threads=1, runs=runs, warmup=3, runtime="litert")
        result["cpu"] = {
            "backend": m["backend"],
            "backend_version": m["backend_version"],
            "threads": 1,
            "runs": runs,
            "latency_ms": m["latency_ms"],
        }
    info = analyze_model(tflite)
    rep = emulate(info, load_profile("ethos_u"))
    result["ethos_u"] = {
        "source": "kseg estimate (roofline from configs/devices/ethos_u.yaml, not a compiler)",
        "profile": rep.profile.description,
        "latency_ms": rep.latency_ms()["total"],
        "npu_ops": sum(1 for p in rep.placements if p.device == "device"),
        "cpu_ops": len(rep.fallbacks),
        "cpu_fallback_ops": sorted({p.op.name for p in rep.fallbacks}),
    }
    vela = _vela(tflite)
    if vela is not None:
        result["ethos_u_vela"] = vela
    return result


def _vela(tflite: Path) -> dict[str, Any] | None:
    """Vela's compiled estimate (Ethos-U55-256) when ``kseg.bench.vela`` exists and Vela is
    installed; None without Vela; Vela's one-line reason when it rejects the model."""
    try:
        from kseg.bench.vela import vela_available, vela_report
    except ImportError:
        return None
    if not vela_available():
        return None
    try:
        r = vela_report(tflite, "ethos-u55-256")
    except KsegError as e:
        return {"source": "Arm Vela compiler", "error": str(e)}
    keep = (
        "latency_ms", "accelerator", "vela_version", "npu_ops", "ops_total", "cpu_ops",
        "sram_bytes", "offchip_read_bytes", "offchip_write_bytes", "system_config",
    )  # fmt: skip
    return {"source": "Arm Vela compiler", **{k: r.get(k) for k in keep}}


def readme_from_folder(folder: str | os.PathLike[str]) -> str:
    """The README text ``kseg export android`` writes, rebuilt from a bundle's own files
    (``model.json``, ``metadata.json``, ``bench.json``, ``labels.txt``)."""
    folder = Path(folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    md = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))["metadata"]
    return _readme(
        card,
        {"name": md["name"], "description": md["description"]},
        [
            {"name": n, "classes": card["bundle"].get("sample_classes", {}).get(n, {})}
            for n in card["bundle"]["samples"]
        ],
        json.loads((folder / "bench.json").read_text(encoding="utf-8")),
        (folder / "labels.txt").read_text(encoding="utf-8").splitlines(),
    )


def arm64_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures a bundle records from ``tools/bundle_consumer.py arm64`` results (one per
    emulated CPU): the worst case over CPUs and samples, in output quantization steps."""
    if not results:
        raise KsegError("no arm64 results to record")
    if not all(r.get("passed") for r in results):
        raise KsegError("an arm64 result did not pass its gates; fix that before recording it")
    return {
        "runtime": results[0]["consumer"].split(",")[0],
        "cpus": [r["cpu"] for r in results],
        "xnnpack_exact": all(r["xnnpack_all_exact"] for r in results),
        "xnnpack_max_diff": max(r["xnnpack_max_diff"] for r in results),
        "xnnpack_min_mask_agreement": min(r["xnnpack_min_pixel_agreement"] for r in results),
        "builtin_max_diff_vs_output_builtin": max(
            r["builtin_max_diff_vs_output_builtin"] for r in results
        ),
        "builtin_max_diff_vs_output": max(r["builtin_max_diff_vs_output"] for r in results),
        "builtin_min_mask_agreement": min(r["builtin_min_pixel_agreement"] for r in results),
        **(
            {  # results of tools/bundle_consumer.py since the bar follows x86-64's own kernels
                "x86_builtin_min_mask_agreement": min(
                    r["x86_builtin_min_pixel_agreement"] for r in results
                ),
                "mask_bar": min(r["mask_bar"] for r in results),
            }
            if all("mask_bar" in r for r in results)
            else {}
        ),
    }


def record_arm64(folder: str | os.PathLike[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the arm64 figures of passing ``tools/bundle_consumer.py arm64`` results into a
    bundle: ``model.json`` (``bundle.golden_kernels.arm64``), the README's expectation table and
    ``manifest.json``. Returns the figures.

    Example:
        >>> record_arm64("android_demo_assets", [json.load(open(f)) for f in result_files])
    """
    from kseg.atomic import write_bytes, write_json, write_text

    folder = Path(folder)
    if problems := verify_manifest(folder):
        raise KsegError(f"{folder}: manifest does not match the files ({problems[0]})")
    figures = arm64_figures(results)
    before = (folder / "model.json").read_bytes()
    card = json.loads(before)
    card["bundle"]["golden_kernels"]["arm64"] = figures
    write_json(folder / "model.json", card)
    try:  # the README is rebuilt from the card on disk; a failure leaves the bundle as it was
        readme = readme_from_folder(folder)
    except Exception:
        write_bytes(folder / "model.json", before)
        raise
    write_text(folder / "README.md", readme)
    write_manifest(folder)
    return figures


def write_manifest(folder: Path) -> dict[str, Any]:
    """``manifest.json``: sha256 and size of every file in ``folder`` except itself."""
    from kseg.atomic import write_json
    from kseg.export.card import sha256_file

    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size_bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": BUNDLE_FORMAT, "files": files}
    write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: str | os.PathLike[str]) -> list[str]:
    """Problems with a bundle's manifest (missing, extra or changed files); empty when consistent."""
    from kseg.export.card import sha256_file

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    problems = [f"{n}: listed but missing" for n in sorted(set(manifest) - present)]
    problems += [f"{n}: not in the manifest" for n in sorted(present - set(manifest))]
    for n in sorted(set(manifest) & present):
        p = folder / n
        if p.stat().st_size != manifest[n]["size_bytes"] or sha256_file(p) != manifest[n]["sha256"]:
            problems.append(f"{n}: sha256/size differ from the manifest")
    return problems


def _mediapipe_section(s, o, k: int) -> str:
    """The README's MediaPipe Tasks snippet: confidence mask (one class) or category mask."""
    confidence = k == 1  # one class: its confidence mask; more: the category mask (class ids)
    text = f"""## Android: MediaPipe Tasks ImageSegmenter

```kotlin
// build.gradle: implementation("com.google.mediapipe:tasks-vision:<version>")
// put model.tflite in app/src/main/assets/
val options = ImageSegmenter.ImageSegmenterOptions.builder()
    .setBaseOptions(BaseOptions.builder().setModelAssetPath("model.tflite").build())
    .setRunningMode(RunningMode.IMAGE)
    .setOutputConfidenceMasks({"true" if confidence else "false"})
    .setOutputCategoryMask({"false" if confidence else "true"})
    .build()
val segmenter = ImageSegmenter.createFromOptions(context, options)
val result = segmenter.segment(BitmapImageBuilder(bitmap).build())   // ARGB_8888 bitmap
"""
    if confidence:
        return (
            text
            + f"""val conf = result.confidenceMasks().get()[0]   // {s[1]}x{s[2]}, float confidence of labels.txt line 0
// mask pixel = confidence > {o["threshold"]}; MediaPipe resizes the frame to {s[1]}x{s[2]} itself
```
"""
        )
    return (
        text
        + f"""val category = ByteBufferExtractor.extract(result.categoryMask().get())  // {s[1]}x{s[2]} bytes
// byte i = class id of pixel i (row-major): labels.txt line (0 = background);
// MediaPipe resizes the frame to {s[1]}x{s[2]} itself. segmenter.labels lists the names.
```

`setOutputConfidenceMasks(true)` gives the {k} per-class confidence masks instead (the argmax
over them is the category mask).
"""
    )


def _kib(n) -> str:
    return "?" if n is None else f"{float(n) / 1024:.0f} KiB"


def _arm64_source(arm64: dict[str, Any] | None) -> str:
    if arm64 is None:
        return (
            "x86-64 measured at export (arm64 not measured for this bundle: "
            "`tools/bundle_consumer_check.sh BUNDLE` measures it on emulated arm64 CPUs)"
        )
    cpus = ", ".join(f"`{c}`" for c in arm64["cpus"])
    return (
        f"measured with {arm64['runtime']} on x86-64 and on emulated arm64 CPUs (qemu {cpus}) "
        "by `tools/bundle_consumer_check.sh`"
    )


def _arm64_rows(arm64: dict[str, Any] | None, output: dict[str, Any]) -> tuple[str, str]:
    """The arm64 rows of the README's expectation table: measured figures where recorded
    (:func:`record_arm64`), else what the kernels promise."""
    bar = f"bar: {ARM64_MIN_MASK_AGREEMENT}"
    if (
        arm64 is not None
        and arm64.get("mask_bar", ARM64_MIN_MASK_AGREEMENT) < ARM64_MIN_MASK_AGREEMENT
    ):
        bar = (
            f"bar: {arm64['mask_bar']:g}, x86-64's own builtin kernels reach "
            f"{arm64['x86_builtin_min_mask_agreement']:.4f} on this bundle's hardest sample"
        )
    xnn = "| arm64 (phones, boards) | XNNPACK (LiteRT's default, MediaPipe Tasks) | "
    builtin = "| arm64 | builtin | "
    if arm64 is not None:
        xnn += (
            "`output.npy` exactly"
            if arm64["xnnpack_exact"]
            else f"`output.npy` to {arm64['xnnpack_max_diff']:.0f} steps (XNNPACK leaves the "
            f"int8 SOFTMAX to the builtin kernels); mask agreement with `NAME.mask.png` >= "
            f"{arm64['xnnpack_min_mask_agreement']:.4f} ({bar})"
        )
        builtin += (
            f"neither tensor exactly: up to {arm64['builtin_max_diff_vs_output_builtin']:.0f} "
            f"steps from `output_builtin.npy` and {arm64['builtin_max_diff_vs_output']:.0f} from "
            f"`output.npy`; mask agreement with `NAME.mask.png` >= "
            f"{arm64['builtin_min_mask_agreement']:.4f} ({bar})"
        )
    else:
        softmax = output["activation"] == "softmax" and output["dtype"] == "uint8"
        xnn += (
            "`output.npy` to a few steps (XNNPACK leaves the int8 SOFTMAX to the builtin "
            "kernels, which round differently on arm64); mask agreement with `NAME.mask.png` "
            f">= {ARM64_MIN_MASK_AGREEMENT}"
            if softmax
            else "`output.npy` exactly"
        )
        builtin += (
            "neither tensor exactly (arm64 rounds differently again); mask agreement with "
            f"`NAME.mask.png` >= {ARM64_MIN_MASK_AGREEMENT}"
        )
    return f"{xnn} |", f"{builtin} |"


def _readme(card, fields, sample_rows, bench, labels) -> str:
    s = card["input"]["shape"]
    o = card["output"]
    p = card["parity"]
    b = card["bundle"]
    gk = b["golden_kernels"]
    mode = card["tflite"]["mode"]
    out_q = (
        f"uint8, quantized: confidence = (q - {o['zero_point']}) * {o['scale']:.6g}"
        if o["dtype"] == "uint8"
        else "float32 confidence in [0, 1]"
    )
    cpu = bench.get("cpu")
    cpu_line = (
        f"- CPU ({bench['machine'].get('cpu', 'this machine')}, {cpu['backend']} "
        f"{cpu['backend_version']}, 1 thread, {cpu['runs']} runs, measured at export with "
        f"load average {bench['load_average_1min']:.1f} on {bench['machine'].get('cpu_count')} cores): p50 "
        f"{cpu['latency_ms']['p50']:.2f} ms, p90 {cpu['latency_ms']['p90']:.2f} ms (`kseg bench`)."
        if cpu
        else "- CPU latency: not measured (`kseg bench model.tflite --threads 1` measures it)."
    )
    eu = bench["ethos_u"]
    eu_lines = [
        f"- Ethos-U55 (kseg estimate, not a compiler result: {eu['profile']}): "
        f"{eu['latency_ms']:.2f} ms, {eu['npu_ops']} ops on the NPU, {eu['cpu_ops']} on the host"
        + (f" ({', '.join(eu['cpu_fallback_ops'])})" if eu["cpu_fallback_ops"] else "")
        + "."
    ]
    vela = bench.get("ethos_u_vela")
    if vela and "error" in vela:
        eu_lines.append(f"- Ethos-U55-256 (Arm Vela compiler): not compiled: {vela['error']}")
    elif vela:
        eu_lines.append(
            f"- Ethos-U55-256 (Arm Vela {vela['vela_version']}, {vela['system_config']}): "
            f"{vela['latency_ms']:.2f} ms, {vela['npu_ops']}/{vela['ops_total']} ops on the NPU"
            + (f" (CPU: {', '.join(vela['cpu_ops'])})" if vela["cpu_ops"] else "")
            + f", SRAM {_kib(vela['sram_bytes'])}, off-chip read "
            f"{_kib(vela['offchip_read_bytes'])}, write {_kib(vela['offchip_write_bytes'])}."
        )
    else:
        eu_lines.append(
            "- Vela (Arm's Ethos-U compiler) was not installed at export; the line above is "
            "kseg's own estimate."
        )
    arm64_xnn, arm64_builtin = _arm64_rows(gk.get("arm64"), o)
    names = ", ".join(r["name"] for r in sample_rows)
    label_lines = "\n".join(f"{i}: {n}" for i, n in enumerate(labels))
    gray = (
        "The model was trained on grayscale images; its first op converts RGB to gray "
        "(0.299 R + 0.587 G + 0.114 B), so feed RGB frames as they are. A gray image repeated "
        "into R, G and B comes out unchanged."
        if b["rgb_to_gray_in_graph"]
        else "The model was trained on RGB images."
    )
    k = int(o["shape"][-1])
    step = 255 // max(1, k - 1)
    if k == 1:
        rule = f"mask = confidence > {o['threshold']}"
        mask_lines = (
            f"- Mask: confidence > {o['threshold']} (one channel = foreground).\n"
            "  `golden/*.mask.png` stores 0 / 255."
        )
        category_row, class_table = "", ""
    else:
        rule = f"class = argmax over the {k} values of a pixel (0 = background)"
        mask_lines = (
            f"- Mask: the class of a pixel is the argmax over its {k} channels (0 = background;"
            " no threshold), which is what MediaPipe's category mask holds.\n"
            f"  `golden/*.category.png` stores the class id (0..{k - 1}) per pixel, "
            f"`golden/*.mask.png` the same scaled for viewing (class c as c * {step})."
        )
        category_row = ", `NAME.category.png` (class id per pixel: the category mask)"
        head = "| sample | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"
        body = "".join(
            f"| {r['name']} | "
            + " | ".join(f"{100 * r['classes'].get(n, 0.0):.2f} %" for n in labels)
            + " |\n"
            for r in sample_rows
        )
        class_table = (
            "\nPixels per class in the golden masks (check your category mask against these):\n\n"
            + head
            + body
        )
    mediapipe = _mediapipe_section(s, o, k)
    return f"""# {fields["name"]} (Android bundle)

Generated by `kseg export android`; do not edit by hand (`manifest.json` holds every file's
sha256). {fields["description"]}

## Files

| file | what |
|---|---|
| `model.tflite` | {mode} model, {card["size_bytes"] / 1024:.0f} KiB, builtin ops only, with TFLite Model Metadata and `labels.txt` packed inside |
| `labels.txt` | class name per output channel |
| `model.json`, `model.md` | kseg model card: conversion, parity gate, graph facts |
| `metadata.json` | the embedded metadata as tflite-support's `MetadataDisplayer` reads it |
| `samples/` | {len(sample_rows)} validation images ({names}) at model resolution; origin and licence in `samples/ATTRIBUTION.md` |
| `golden/` | per sample: `NAME.input.npy` (exact input tensor), `NAME.output.npy` and `NAME.output_builtin.npy` (exact output tensors of two kernel families, below), `NAME.mask.png` (the mask){category_row} |
| `bench.json` | latency measured at export and the Ethos-U estimate |
| `manifest.json` | sha256 and size of every file |

## Input and output

- Input `image`: `uint8 [1, {s[1]}, {s[2]}, 3]`, RGB, pixel values 0..255 as the camera gives them.
  Resize (stretch) the frame to {s[1]}x{s[2]}. Normalization is inside the model: do not normalize.
  The metadata states NormalizationOptions mean 0, std 1 (identity) for tools that ask.
  {gray}
- Output `segmentation_masks`: `{o["dtype"]} [1, {s[1]}, {s[2]}, {o["shape"][-1]}]`, {out_q};
  activation {o["activation"]}.
{mask_lines}
- Labels (`labels.txt`):

```
{label_lines}
```

Quality (kseg's parity gate, {p["n_images"]} validation images): Keras Dice {p["float_dice"]:.4f},
this file {p["tflite_dice"]:.4f} (drop {p["dice_drop"]:+.4f}), pixel agreement {p["pixel_agreement"]:.4f}.
{class_table}
## Golden files: check your integration

Run your pipeline on `golden/NAME.input.npy` (or decode `samples/NAME.png`: the same pixels) and
compare:

- `golden/NAME.output.npy` is the output tensor of LiteRT's default CPU path (XNNPACK), the one
  Android's LiteRT Interpreter and MediaPipe Tasks take; `golden/NAME.mask.png` is its mask.
- `golden/NAME.output_builtin.npy` is the output of TFLite's builtin kernels on x86-64
  (tflite-runtime, LiteRT with `BUILTIN_WITHOUT_DEFAULT_DELEGATES`). The two kernel families round
  int8 requantization differently by one step on some elements, which grows over a deep network:
  here up to {gk["max_diff"]:.0f} steps, mask agreement >= {gk["min_mask_agreement"]:.4f}.

What to expect from each CPU and kernel family, {_arm64_source(gk.get("arm64"))}:

| CPU | kernels | expect |
|---|---|---|
| x86-64 | XNNPACK (LiteRT's default) | `output.npy` exactly |
{arm64_xnn}
| x86-64 | builtin (tflite-runtime, LiteRT without delegates) | `output_builtin.npy` exactly |
{arm64_builtin}

"Exactly" means the same output bytes for the same input bytes (a float output: within 1e-5);
there, mask agreement >= 0.999 with `golden/NAME.mask.png` is the bar. A clearly lower figure
means a pipeline bug (BGR instead of RGB, normalizing twice, resizing, wrong threshold).

## Speed

{cpu_line}
{chr(10).join(eu_lines)}

{mediapipe}
MediaPipe reads the input size, colour space, normalization and labels from the metadata.

## Android: plain LiteRT Interpreter

```kotlin
// build.gradle: implementation("com.google.ai.edge.litert:litert:<version>")
val interpreter = Interpreter(FileUtil.loadMappedFile(context, "model.tflite"),
                              Interpreter.Options().setNumThreads(2))
val scaled = Bitmap.createScaledBitmap(bitmap, {s[2]}, {s[1]}, true)
val input = ByteBuffer.allocateDirect({s[1]} * {s[2]} * 3).order(ByteOrder.nativeOrder())
val px = IntArray({s[1]} * {s[2]}); scaled.getPixels(px, 0, {s[2]}, 0, 0, {s[2]}, {s[1]})
for (p in px) {{ input.put((p shr 16 and 0xFF).toByte()); input.put((p shr 8 and 0xFF).toByte()); input.put((p and 0xFF).toByte()) }}
val output = ByteBuffer.allocateDirect({s[1]} * {s[2]} * {o["shape"][-1]} * {1 if o["dtype"] == "uint8" else 4}).order(ByteOrder.nativeOrder())
interpreter.run(input.rewind(), output)
// {out_q}; {rule}
```

Check the integration once against `golden/` (same input bytes -> same output bytes).
"""


__all__ = [
    "BUNDLE_FORMAT",
    "BundleExistsError",
    "arm64_figures",
    "export_android",
    "readme_from_folder",
    "record_arm64",
    "resolve_model_path",
    "verify_manifest",
    "write_manifest",
]
