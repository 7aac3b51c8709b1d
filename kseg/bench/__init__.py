"""Benchmarks for ``.tflite`` files: measured latency and memory, device emulation, reports.

No TensorFlow anywhere here, so ``kseg bench`` runs on the device itself.

- :mod:`~kseg.bench.analyze`: flatbuffer analysis (ops, tensors, quantization, MACs, memory).
- :mod:`~kseg.bench.devices`: device profiles from ``configs/devices/*.yaml``.
- :mod:`~kseg.bench.npu`: partitioning, handoffs, fallbacks and a roofline latency estimate.
- :mod:`~kseg.bench.latency`: measured init, first inference, percentiles, peak RSS, INT8 peak.
- :mod:`~kseg.bench.report`: JSON, Markdown and PNG charts.
- :mod:`~kseg.bench.run`: :func:`run_benchmark`, what ``kseg bench`` calls.
- :mod:`~kseg.bench.vela`: Arm's Vela compiler (optional, run as a subprocess) for Ethos-U
  profiles: its cycle estimate beside kseg's, and calibration of the profile from it.

Example:
    >>> from kseg.bench import run_benchmark, to_markdown
    >>> print(to_markdown(run_benchmark(["model_int8.tflite"], threads=[1, 2], npu=["edgetpu"])))
"""

from kseg.bench.analyze import ModelInfo, OpInfo, TensorInfo, analyze_model
from kseg.bench.devices import DeviceProfile, available_profiles, load_profile
from kseg.bench.latency import calibrate_peak, machine_info, measure, measure_isolated
from kseg.bench.npu import NpuReport, emulate
from kseg.bench.report import to_markdown, write_charts, write_json_report, write_markdown
from kseg.bench.run import run_benchmark

__all__ = [
    "DeviceProfile",
    "ModelInfo",
    "NpuReport",
    "OpInfo",
    "TensorInfo",
    "analyze_model",
    "available_profiles",
    "calibrate_peak",
    "emulate",
    "load_profile",
    "machine_info",
    "measure",
    "measure_isolated",
    "run_benchmark",
    "to_markdown",
    "write_charts",
    "write_json_report",
    "write_markdown",
]
