"""TFLite conversion (every mode), the Dice parity gate, and model cards."""

from kseg.export.convert import MODE_DESCRIPTIONS, Mode, convert_model, fixed_batch_function
from kseg.export.parity import ParityError, check_parity
from kseg.export.tflite import export_tflite, graph_facts

__all__ = [
    "MODE_DESCRIPTIONS",
    "Mode",
    "ParityError",
    "check_parity",
    "convert_model",
    "export_tflite",
    "fixed_batch_function",
    "graph_facts",
]
