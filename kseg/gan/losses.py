"""GAN losses (logits in, scalar out).

One-sided label smoothing (Salimans et al. 2016): the discriminator's target for real images is
``real_label`` (0.9), for generated ones 0; the generator's target stays 1. Only the real side is
smoothed, so the optimal discriminator does not reward generated samples.
"""

from __future__ import annotations

from kseg._keras import tf

REAL_LABEL = 0.9
L1_WEIGHT = 100.0  # pix2pix's lambda


def _bce(logits, target: float):
    logits = tf.convert_to_tensor(logits, tf.float32)
    labels = tf.fill(tf.shape(logits), tf.constant(target, tf.float32))
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_loss(real_logits, fake_logits, real_label: float = REAL_LABEL):
    """``BCE(real, real_label) + BCE(fake, 0)``, each averaged over its logits."""
    return _bce(real_logits, real_label) + _bce(fake_logits, 0.0)


def generator_loss(fake_logits):
    """Non-saturating generator loss ``BCE(fake, 1)``."""
    return _bce(fake_logits, 1.0)


def l1_loss(real, fake):
    return tf.reduce_mean(tf.abs(tf.cast(real, tf.float32) - tf.cast(fake, tf.float32)))


__all__ = ["L1_WEIGHT", "REAL_LABEL", "discriminator_loss", "generator_loss", "l1_loss"]
