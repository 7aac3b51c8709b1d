"""Embed TFLite Model Metadata with tflite-support's maintained writer (runs in its own venv).

Run by :mod:`kseg.deploy.metadata` as ``PYTHON _write_metadata.py SPEC.json``; imports only the
standard library and ``tflite_support`` (tflite-support 0.4.4 pins protobuf 3.20, which the main
TensorFlow stack cannot share). SPEC holds ``model_in``, ``model_out``, ``labels``, ``json_out``,
``name``, ``version``, ``description``, ``author``, ``licenses``, ``input_description``,
``output_description``. The model's metadata is read back with ``MetadataDisplayer`` and written
as JSON to ``json_out``, so a file that the standard reader cannot parse is never reported written.
"""

from __future__ import annotations

import json
import sys


def main(spec_path: str) -> int:
    from tflite_support import metadata
    from tflite_support import metadata_schema_py_generated as metadata_fb
    from tflite_support.metadata_writers import image_segmenter, metadata_info, writer_utils

    spec = json.loads(open(spec_path, encoding="utf-8").read())
    model = writer_utils.load_file(spec["model_in"])
    general = metadata_info.GeneralMd(
        name=spec["name"],
        version=spec["version"],
        description=spec["description"],
        author=spec["author"],
        licenses=spec["licenses"],
    )
    # The input is uint8 RGB pixels; normalization happens inside the graph, so the stated
    # NormalizationOptions are the identity (mean 0, std 1) on every channel.
    inp = metadata_info.InputImageTensorMd(
        name="image",
        description=spec["input_description"],
        norm_mean=[0.0, 0.0, 0.0],
        norm_std=[1.0, 1.0, 1.0],
        color_space_type=metadata_fb.ColorSpaceType.RGB,
        tensor_type=writer_utils.get_input_tensor_types(model)[0],
    )
    out = metadata_info.TensorMd(
        name="segmentation_masks",
        description=spec["output_description"],
        associated_files=[metadata_info.LabelFileMd(file_path=spec["labels"])],
    )
    writer = image_segmenter.MetadataWriter.create_from_metadata_info(
        model, general_md=general, input_md=inp, output_md=out
    )
    populated = writer.populate()
    displayer = metadata.MetadataDisplayer.with_model_buffer(populated)
    info = {
        "writer": "tflite_support.metadata_writers.image_segmenter",
        "tflite_support": _version("tflite-support"),
        "metadata": json.loads(displayer.get_metadata_json()),
        "associated_files": displayer.get_packed_associated_file_list(),
    }
    with open(spec["model_out"], "wb") as f:
        f.write(populated)
    with open(spec["json_out"], "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
