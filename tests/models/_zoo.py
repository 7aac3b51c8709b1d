"""Shared helpers of the model-zoo tests: tiny model options, a fixed synthetic batch, LiteRT run."""

from __future__ import annotations

import numpy as np

SIZE = 32
DEPTH = 2


def tiny_options(name: str) -> dict:
    """Options that make every architecture small and fast at 32x32."""
    if name == "mobile_unet":
        return {"depth": DEPTH, "width": 0.25}
    return {"depth": DEPTH, "filters": 4}


def disks(n: int, size: int = SIZE, channels: int = 1, seed: int = 0):
    """Bright disks on a dark speckled background: images (N,S,S,C) in 0..255, masks (N,S,S,1).

    Also returns the noise-free images (the denoising target). Each image has a pixel at 0 and
    one at 255 so INT8 calibration sees the full pixel range (input scale ~1).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = np.zeros((n, size, size, channels), np.float32)
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.3)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
        masks[i, ..., 0] = disk
        clean[i] = (60 + 120 * disk)[..., None]
    speckle = rng.gamma(4.0, 0.25, clean.shape).astype(np.float32)
    images = np.clip(clean * speckle, 0, 255)
    images[:, 0, 0, :] = 0.0
    images[:, -1, -1, :] = 255.0
    return images.astype(np.float32), masks, clean


def run_tflite(tflite_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Run a one-image-batch INT8 or float .tflite on each image with LiteRT, dequantized output."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    results = []
    for img in images:
        x = img[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[0])
    return np.stack(results)
