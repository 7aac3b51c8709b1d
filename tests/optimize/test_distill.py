"""Distillation: the loss equals the formula on hand-made numbers; the Distiller trains only the
student; the baseline student has the same initialisation and budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kseg._keras import keras, tf
from kseg.errors import ConfigError
from kseg.models import create_model
from kseg.optimize import distill as D


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def _bern_kl(p, q):
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_soft_kl_matches_bernoulli_formula():
    zs = np.array([0.0, 1.0, -3.0, 2.5], np.float32).reshape(1, 2, 2, 1)
    zt = np.array([2.0, -1.0, -1.0, 2.5], np.float32).reshape(1, 2, 2, 1)
    T = 2.0
    expected = (
        T
        * T
        * np.mean(
            [
                _bern_kl(_sig(t / T), _sig(s / T))
                for s, t in zip(zs.ravel(), zt.ravel(), strict=False)
            ]
        )
    )
    got = float(D.soft_kl(tf.constant(zs), tf.constant(zt), T))
    assert got == pytest.approx(expected, rel=1e-5)
    # pixel 4 has identical logits: contributes 0; the whole is > 0
    assert got > 0
    assert float(D.soft_kl(tf.constant(zt), tf.constant(zt), T)) == pytest.approx(0.0, abs=1e-7)


def test_sigmoid_kl_equals_two_class_softmax_kl():
    z_s, z_t = np.float32(0.7), np.float32(-1.3)
    two = lambda z: np.array([0.0, z], np.float32).reshape(1, 1, 1, 2)  # noqa: E731
    one = lambda z: np.array([z], np.float32).reshape(1, 1, 1, 1)  # noqa: E731
    a = float(D.soft_kl(tf.constant(one(z_s)), tf.constant(one(z_t)), 3.0))
    b = float(D.soft_kl(tf.constant(two(z_s)), tf.constant(two(z_t)), 3.0))
    assert a == pytest.approx(b, rel=1e-5)


def test_distillation_loss_is_alpha_task_plus_t2_kl():
    y = np.array([1, 0, 0, 1], np.float32).reshape(1, 2, 2, 1)
    zs = np.array([0.5, -0.5, 1.0, 3.0], np.float32).reshape(1, 2, 2, 1)
    zt = np.array([4.0, -4.0, -2.0, 2.0], np.float32).reshape(1, 2, 2, 1)
    alpha, T = 0.3, 4.0
    ps = [_sig(z) for z in zs.ravel()]
    bce = -np.mean(
        [t * math.log(p) + (1 - t) * math.log(1 - p) for t, p in zip(y.ravel(), ps, strict=False)]
    )
    kl = np.mean(
        [_bern_kl(_sig(t / T), _sig(s / T)) for s, t in zip(zs.ravel(), zt.ravel(), strict=False)]
    )
    expected = alpha * bce + (1 - alpha) * T * T * kl
    task = keras.losses.BinaryCrossentropy()
    got = float(
        D.distillation_loss(
            tf.constant(y),
            tf.constant(zs),
            tf.constant(zt),
            task_loss=task,
            alpha=alpha,
            temperature=T,
        )
    )
    assert got == pytest.approx(expected, rel=1e-4)


def test_attention_map_is_normalised_channel_energy():
    f = np.zeros((1, 2, 2, 2), np.float32)
    f[0, 0, 0] = [3.0, 4.0]  # energy mean(9, 16) = 12.5 at one pixel only
    a = D.attention_map(tf.constant(f)).numpy()
    np.testing.assert_allclose(a, [[1.0, 0.0, 0.0, 0.0]], atol=1e-6)
    assert float(D.attention_loss([tf.constant(f)], [tf.constant(f)])) == pytest.approx(
        0.0, abs=1e-7
    )


def test_logits_model_uses_zoo_logits_layer():
    m = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    z = D.logits_model(m).predict(x, verbose=0)
    np.testing.assert_allclose(tf.sigmoid(z).numpy(), m.predict(x, verbose=0), atol=1e-6)


def test_distill_with_baseline_trains_student_only(tiny_data):
    teacher = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    t_weights = [w.copy() for w in teacher.get_weights()]

    def make():
        return create_model("mobile_unet", input_shape=(32, 32, 1), depth=2, width=0.25)

    res = D.distill_with_baseline(
        teacher,
        make,
        tiny_data,
        epochs=1,
        batch_size=8,
        loss=keras.losses.BinaryCrossentropy(),
        alpha=0.5,
        temperature=2.0,
        attention_pairs="auto",
        beta=10.0,
        run_eagerly=True,
    )
    for a, b in zip(t_weights, teacher.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)
    m = res["metrics"]
    assert set(m) >= {"teacher", "student", "baseline", "student_minus_baseline_dice"}
    assert m["student_minus_baseline_dice"] == pytest.approx(
        m["student"]["dice"] - m["baseline"]["dice"]
    )
    assert res["params"]["student"] < res["params"]["teacher"] or res["params"]["student"] > 0
    # same initialisation, different training signal -> different weights
    diffs = [
        np.abs(a - b).max()
        for a, b in zip(res["student"].get_weights(), res["baseline"].get_weights(), strict=False)
    ]
    assert max(diffs) > 0
    assert res["history"]["distilled"]["kd_loss"][0] > 0
    # the budget (the distiller's default learning rate) and the loss options, as passed on
    assert res["settings"] == {
        "epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "lr_schedule": "constant",
        "seed": 0, "augment": False, "unlabeled_images": 0,
        "alpha": 0.5, "temperature": 2.0, "attention_pairs": "auto", "beta": 10.0,
    }  # fmt: skip


def test_distill_refuses_a_misspelt_option_before_training(tiny_data):
    m = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    with pytest.raises(TypeError, match="alpah"):
        D.distill(m, m, tiny_data, epochs=1, alpah=0.5)


def test_distiller_rejects_bad_settings():
    m = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)
    with pytest.raises(ConfigError, match="alpha"):
        D.Distiller(m, m, task_loss=keras.losses.BinaryCrossentropy(), alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        D.Distiller(m, m, task_loss=keras.losses.BinaryCrossentropy(), temperature=0)


def test_alpha_one_trains_exactly_like_plain_fit(tiny_data):
    """With alpha = 1 the soft term vanishes, so the Distiller's training loop must give the same
    weights as ``fit`` (same init, seed, batches): any other difference would be a loop bug
    (BatchNorm updates, shuffling, regularization losses) blamed on distillation."""
    from kseg.optimize._train import fit

    teacher = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)

    def make():
        keras.utils.set_random_seed(3)
        return create_model("mobile_unet", input_shape=(32, 32, 1), depth=2, width=0.25)

    loss = keras.losses.BinaryCrossentropy()
    distilled, alone, soft = make(), make(), make()
    init = [w.copy() for w in alone.get_weights()]
    kw = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-2, "loss": loss, "seed": 5,
          "run_eagerly": True}  # fmt: skip
    D.distill(teacher, distilled, tiny_data, alpha=1.0, **kw)
    D.distill(teacher, soft, tiny_data, alpha=0.5, temperature=2.0, **kw)
    fit(alone, tiny_data, **kw)
    moved = max(np.abs(a - b).max() for a, b in zip(init, alone.get_weights(), strict=True))
    apart = max(
        np.abs(a - b).max()
        for a, b in zip(distilled.get_weights(), alone.get_weights(), strict=True)
    )
    assert moved > 0.1 and apart < 1e-3 * moved  # float noise only (Adam amplifies ~0 gradients)

    def pred(m):
        return m.predict(tiny_data.x_val, verbose=0)

    np.testing.assert_allclose(pred(distilled), pred(alone), atol=1e-4)
    assert np.abs(pred(soft) - pred(alone)).max() > 1e-3  # the soft term does change training


def test_augment_pair_flips_image_and_mask_together_and_keeps_pixel_range():
    from kseg.optimize._train import augment_pair

    x = np.zeros((16, 16, 1), np.float32)
    x[:, :4] = 250.0  # bright left band
    y = (x > 0).astype(np.float32)
    tf.random.set_seed(0)
    flipped = 0
    for _ in range(20):
        xa, ya = (t.numpy() for t in augment_pair(tf.constant(x), tf.constant(y)))
        assert xa.min() >= 0.0 and xa.max() <= 255.0
        np.testing.assert_array_equal(ya, y if ya[0, 0, 0] == 1 else y[:, ::-1])
        bright = xa > xa.mean()
        np.testing.assert_array_equal(bright, ya > 0.5)  # the mask moved with the image
        flipped += int(ya[0, 0, 0] == 0)
    assert 0 < flipped < 20


def test_distill_with_augmentation_runs_and_records_it(tiny_data):
    teacher = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)

    def make():
        return create_model("mobile_unet", input_shape=(32, 32, 1), depth=2, width=0.25)

    res = D.distill_with_baseline(
        teacher, make, tiny_data, epochs=1, batch_size=4, augment=True, run_eagerly=True
    )
    assert res["settings"]["augment"] is True
    assert len(res["history"]["distilled"]["loss"]) == 1
    assert np.isfinite(res["metrics"]["student"]["dice"])


def _conv_net(seed):
    """A BatchNorm-free one-conv sigmoid net, so a zero-rate step changes nothing but the loss."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 1))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp / 255.0)
    return keras.Model(inp, out)


def test_unlabeled_batch_adds_only_its_soft_term_to_the_loss():
    """``((x, y), x_u)`` batches: loss = alpha * task(labeled) + (1 - alpha) * (KD(labeled) +
    KD(unlabeled)); the unlabeled images carry no task term."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    y = (rng.uniform(size=(4, 16, 16, 1)) > 0.5).astype(np.float32)
    xu = rng.uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    student, teacher = _conv_net(1), _conv_net(2)
    bce = keras.losses.BinaryCrossentropy()
    d = D.Distiller(student, teacher, task_loss=bce, alpha=0.3, temperature=2.0)
    d.compile(optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    got = float(d.train_step(((tf.constant(x), tf.constant(y)), tf.constant(xu)))["loss"])

    zs, zt = D.logits_model(student), D.logits_model(teacher)
    task = float(bce(y, student(x)))
    kd_l = float(D.soft_kl(zs(x), zt(x), 2.0))
    kd_u = float(D.soft_kl(zs(xu), zt(xu), 2.0))
    assert kd_u > 1e-4  # the two nets disagree on the unlabeled images
    assert got == pytest.approx(0.3 * task + 0.7 * (kd_l + kd_u), rel=1e-5)
    d.loss_tracker.reset_state()
    plain = float(d.train_step((tf.constant(x), tf.constant(y)))["loss"])
    assert plain == pytest.approx(0.3 * task + 0.7 * kd_l, rel=1e-5)


def test_with_unlabeled_keeps_one_labeled_pass_per_epoch():
    from kseg.optimize._train import FitData, with_unlabeled

    rng = np.random.default_rng(0)
    data = FitData(
        rng.uniform(0, 255, (10, 8, 8, 1)), np.zeros((10, 8, 8)), np.zeros((2, 8, 8, 1)),
        np.zeros((2, 8, 8)),
    )  # fmt: skip
    unlabeled = np.arange(3 * 64, dtype=np.float32).reshape(3, 8, 8, 1)
    batches = list(with_unlabeled(data, unlabeled, 4, augment=False, seed=0)["x"])
    assert [len(b[0][0]) for b in batches] == [4, 4, 2]  # ceil(10 / 4) steps, as a plain run
    assert [len(b[1]) for b in batches] == [4, 4, 4]  # the 3 unlabeled images repeat
    seen = {float(im[0, 0, 0]) for b in batches for im in b[1].numpy()}
    assert seen == {0.0, 64.0, 128.0}


def test_distill_with_unlabeled_and_cosine_records_them(tiny_data):
    teacher = create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4)

    def make():
        keras.utils.set_random_seed(3)
        return create_model("mobile_unet", input_shape=(32, 32, 1), depth=2, width=0.25)

    res = D.distill_with_baseline(
        teacher, make, tiny_data, epochs=2, batch_size=4, lr_schedule="cosine",
        unlabeled=tiny_data.x_val, run_eagerly=True,
    )  # fmt: skip
    assert res["settings"]["unlabeled_images"] == len(tiny_data.x_val)
    assert res["settings"]["lr_schedule"] == "cosine"
    assert len(res["history"]["distilled"]["loss"]) == 2
    assert np.isfinite(res["metrics"]["student"]["dice"])


def test_cosine_schedule_decays_to_zero_over_the_run_and_bad_name_is_config_error():
    from kseg.optimize._train import FitData, adam, fit

    cfg = adam(1e-3, schedule="cosine", total_steps=10).get_config()["learning_rate"]
    sched = keras.optimizers.schedules.deserialize(cfg)
    assert [float(sched(s)) for s in (0, 5, 10)] == pytest.approx([1e-3, 0.5e-3, 0.0], abs=1e-9)
    assert adam(1e-3).get_config()["learning_rate"] == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="schedule 'step'"):
        adam(1e-3, schedule="step")
    # fit() decays over epochs * steps per epoch: 2 epochs of ceil(10 / 4) = 3 steps
    rng = np.random.default_rng(0)
    data = FitData(
        rng.uniform(0, 255, (10, 16, 16, 1)), np.zeros((10, 16, 16)),
        np.zeros((2, 16, 16, 1)), np.zeros((2, 16, 16)),
    )  # fmt: skip
    model = _conv_net(0)
    fit(model, data, epochs=2, batch_size=4, learning_rate=1e-2, lr_schedule="cosine",
        run_eagerly=True)  # fmt: skip
    lr = model.optimizer.get_config()["learning_rate"]
    assert lr["config"]["decay_steps"] == 6
