"""Signals a person can read while a GAN trains: sample diversity and memorisation.

* **Diversity**: mean pairwise SSIM of a batch of generated samples (single-scale SSIM, 11x11
  Gaussian window, ``tf.image.ssim``). Multi-scale SSIM with its 5 default scales needs images of
  about 176 px or more, so at 64/128 px kseg uses plain SSIM. 1.0 means every sample is the same
  image (mode collapse); compare it with the same figure on real images.
* **Memorisation**: for each sample, the RMSE (pixel values in ``[0, 1]``) to its nearest
  training image. 0 means the sample *is* a training image; compare with the nearest-neighbour
  distance of each training image to the other training images.
"""

from __future__ import annotations

import numpy as np

from kseg._keras import tf


def to_unit(images: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` -> ``[0, 1]`` float32, shape ``(N, H, W, 1)``."""
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


def ssim_diversity(images: np.ndarray, max_pairs: int = 2000, seed: int = 0) -> float:
    """Mean SSIM over pairs ``i < j`` of ``images`` (values in ``[0, 1]``, ``(N, H, W, 1)``)."""
    x = np.asarray(images, np.float32)
    n = len(x)
    if n < 2:
        raise ValueError("diversity needs at least 2 images")
    ii, jj = np.triu_indices(n, k=1)
    if len(ii) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(ii), max_pairs, replace=False)
        ii, jj = ii[pick], jj[pick]
    vals = tf.image.ssim(tf.constant(x[ii]), tf.constant(x[jj]), max_val=1.0)
    return float(np.mean(vals.numpy()))


def nearest_distances(
    samples: np.ndarray, train: np.ndarray, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """RMSE of each sample to its nearest training image, and that image's index.

    ``exclude_self=True`` (``samples is train``) skips the diagonal: the leave-one-out baseline.
    """
    a = np.asarray(samples, np.float32).reshape(len(samples), -1)
    b = np.asarray(train, np.float32).reshape(len(train), -1)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    d2 = np.maximum(d2, 0.0) / a.shape[1]
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    idx = d2.argmin(1)
    return np.sqrt(d2[np.arange(len(a)), idx]), idx


def report(samples: np.ndarray, train: np.ndarray, real_batch: np.ndarray) -> dict[str, float]:
    """Diversity and memorisation figures; every input in ``[0, 1]``."""
    nn, _ = nearest_distances(samples, train)
    base, _ = nearest_distances(train, train, exclude_self=True) if len(train) > 1 else (nn, None)
    return {
        "diversity_ssim": ssim_diversity(samples),
        "real_diversity_ssim": ssim_diversity(real_batch),
        "nn_rmse_mean": float(nn.mean()),
        "nn_rmse_min": float(nn.min()),
        "train_nn_rmse_median": float(np.median(base)),
        "n_samples": int(len(samples)),
        "diversity_metric": "mean pairwise SSIM (single scale, 11x11 window)",
        "distance_metric": "RMSE to nearest training image, pixels in [0, 1]",
    }


__all__ = ["nearest_distances", "report", "ssim_diversity", "to_unit"]
