"""kseg.gan: network shapes and stabilisations, the smoothed loss by hand, the monitor figures,
and sample folders that kseg's folder reader accepts (tiny 32 px models, a couple of steps)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from click.testing import CliRunner

from kseg._keras import keras, tf
from kseg.cli import main
from kseg.data.folder import scan_folder
from kseg.data.io import read_mask
from kseg.errors import ConfigError, DataError
from kseg.gan import losses as L
from kseg.gan import models as M
from kseg.gan.data import load_training_data, masks_for_sampling
from kseg.gan.monitor import nearest_distances, ssim_diversity, to_unit
from kseg.gan.sample import sample
from kseg.gan.train import train_gan

_NORM = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Normalization,
    keras.layers.Rescaling,
)


def _bce(x: float, t: float) -> float:
    # numerically stable sigmoid cross-entropy, written out by hand
    return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size", [32, 64, 128])
def test_dcgan_shapes_and_output_range(size):
    gen, disc = M.dcgan_generator(size), M.dcgan_discriminator(size)
    z = tf.random.normal((2, 100), seed=1) * 1000.0  # huge inputs: tanh must still bound them
    img = gen(z, training=False).numpy()
    assert img.shape == (2, size, size, 1)
    assert img.min() >= -1.0 and img.max() <= 1.0
    assert np.abs(img).max() > 0.9  # saturates: the output really is tanh, not a linear layer
    assert disc(img, training=False).shape == (2, 1)
    # no normalisation at the generator output: the model output comes straight from the conv
    last = gen.layers[-1]
    assert isinstance(last, keras.layers.Conv2DTranspose) and last.activation.__name__ == "tanh"


def test_pix2pix_shapes_and_range():
    gen, disc = M.pix2pix_generator(32), M.patchgan_discriminator(32)
    m = tf.constant(
        np.where(np.random.default_rng(0).random((3, 32, 32, 1)) > 0.5, 1.0, -1.0), tf.float32
    )
    img = gen(m, training=False).numpy()
    assert img.shape == (3, 32, 32, 1)
    assert -1.0 <= img.min() and img.max() <= 1.0
    assert disc([m, img], training=False).shape == (3, 4, 4, 1)  # one logit per patch


def _first_layers_from_input(model):
    """Layers between the input(s) and the first LeakyReLU."""
    seen = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.LeakyReLU):
            return seen
        seen.append(layer)
    raise AssertionError("no LeakyReLU in discriminator")


@pytest.mark.parametrize("build", [M.dcgan_discriminator, M.patchgan_discriminator])
def test_discriminator_input_not_normalised_and_leaky(build):
    disc = build(64)
    first = _first_layers_from_input(disc)
    assert not any(isinstance(x, _NORM) for x in first), [x.name for x in first]
    assert any(isinstance(x, keras.layers.Conv2D) for x in first)
    assert not any(isinstance(x, keras.layers.ReLU) for x in disc.layers)  # LeakyReLU only
    assert sum(isinstance(x, keras.layers.LeakyReLU) for x in disc.layers) >= 3
    # lighter than its generator
    gen = M.dcgan_generator(64) if build is M.dcgan_discriminator else M.pix2pix_generator(64)
    assert disc.count_params() < gen.count_params()


def test_bad_size():
    with pytest.raises(ConfigError, match="--size 100"):
        M.check_size(100, allowed=(64, 128))
    with pytest.raises(ConfigError, match="64, 128"):
        M.check_size(32, allowed=(64, 128))


# ----------------------------------------------------------------------------- losses


def test_discriminator_loss_uses_one_sided_label_smoothing():
    real, fake = [2.0, 1.0], [0.5, -3.0]
    expected = (_bce(2.0, 0.9) + _bce(1.0, 0.9)) / 2 + (_bce(0.5, 0.0) + _bce(-3.0, 0.0)) / 2
    got = float(L.discriminator_loss(tf.constant(real), tf.constant(fake)))
    assert L.REAL_LABEL == 0.9
    assert got == pytest.approx(expected, rel=1e-6)
    unsmoothed = (_bce(2.0, 1.0) + _bce(1.0, 1.0)) / 2 + (_bce(0.5, 0.0) + _bce(-3.0, 0.0)) / 2
    assert got - unsmoothed == pytest.approx(0.1 * (2.0 + 1.0) / 2, rel=1e-5)  # 0.1 * mean logit
    # the fake side is NOT smoothed: its target stays 0
    only_fake = float(L.discriminator_loss(tf.constant([50.0]), tf.constant([0.0]), real_label=1.0))
    assert only_fake == pytest.approx(math.log(2.0), abs=1e-6)


def test_generator_loss_targets_one():
    assert float(L.generator_loss(tf.zeros((4, 1)))) == pytest.approx(math.log(2.0), rel=1e-6)
    assert float(L.generator_loss(tf.constant([3.0]))) == pytest.approx(_bce(3.0, 1.0), rel=1e-6)


# ----------------------------------------------------------------------------- monitor


def test_nearest_distance_zero_for_a_training_image():
    rng = np.random.default_rng(0)
    train = rng.random((6, 16, 16, 1)).astype(np.float32)
    d, idx = nearest_distances(train[[4, 1]], train)
    np.testing.assert_allclose(d, 0.0, atol=1e-3)
    assert list(idx) == [4, 1]
    shifted = np.clip(train[2:3] + 0.1, 0, 1)
    d2, idx2 = nearest_distances(shifted, train)
    assert idx2[0] == 2 and 0.05 < d2[0] <= 0.1 + 1e-6
    base, _ = nearest_distances(train, train, exclude_self=True)
    assert np.all(base > 0.2)  # independent uniform noise: RMSE about 0.41


def test_ssim_diversity_identical_is_one_and_noise_is_low():
    img = np.random.default_rng(1).random((1, 32, 32, 1)).astype(np.float32)
    assert ssim_diversity(np.repeat(img, 5, axis=0)) == pytest.approx(1.0, abs=1e-5)
    noise = np.random.default_rng(2).random((5, 32, 32, 1)).astype(np.float32)
    assert ssim_diversity(noise) < 0.1


# ----------------------------------------------------------------------------- train + sample


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    images, masks = load_training_data("synthetic:ultrasound:8", 32, need_masks=True)
    runs = {}
    for kind in ("pix2pix", "dcgan"):
        runs[kind] = root / kind
        train_gan(
            images,
            masks,
            runs[kind],
            kind=kind,
            epochs=2,
            batch_size=4,
            steps_per_epoch=1,
            allowed_sizes=None,
            log=lambda m: None,
        )
    return root, runs, images


def test_run_folder_monitoring(tiny_runs):
    _, runs, _ = tiny_runs
    run = runs["pix2pix"]
    with open(run / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("d_loss", "g_loss", "l1"))
    import json

    rec = json.loads((run / "epochs" / "epoch_002.json").read_text())
    assert 0.0 <= rec["diversity_ssim"] <= 1.0 and rec["nn_rmse_mean"] >= rec["nn_rmse_min"] >= 0
    import cv2

    grid = cv2.imread(str(run / "epochs" / "epoch_002.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape == (3 * 32 + 2 * 2, 8 * 32 + 7 * 2)  # mask, real, generated rows of 8
    assert (run / "losses.png").stat().st_size > 0
    assert json.loads((run / "gan.json").read_text())["kind"] == "pix2pix"


def test_pix2pix_sample_folder_is_a_kseg_dataset(tiny_runs):
    root, runs, _ = tiny_runs
    out = root / "pairs"
    sample(runs["pix2pix"], 5, out, masks="synthetic", seed=3)
    samples = scan_folder(out)
    assert len(samples) == 5
    expect = masks_for_sampling("synthetic", 32, 5, seed=3)
    for s, m in zip(samples, expect, strict=True):
        assert s.meta["generated"] == "1"
        np.testing.assert_array_equal(read_mask(s.mask), m)
    with pytest.raises(DataError, match="not empty"):
        sample(runs["pix2pix"], 5, out, masks="synthetic")  # no clobbering


def test_dcgan_sample_has_no_masks(tiny_runs):
    root, runs, _ = tiny_runs
    out = root / "dc"
    sample(runs["dcgan"], 3, out)
    assert not (out / "masks").exists()
    assert len(scan_folder(out, require_masks=False)) == 3
    with pytest.raises(DataError, match="masks"):
        scan_folder(out)
    with pytest.raises(DataError, match="pix2pix run only"):
        sample(runs["dcgan"], 3, root / "dc2", masks="synthetic")


def test_jittered_masks_cycle_the_source(tmp_path):
    import cv2

    (tmp_path / "masks").mkdir()
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 10:22] = 255
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), m)
    out = masks_for_sampling(tmp_path, 32, 4, seed=0)
    assert out.shape == (4, 32, 32) and set(np.unique(out)) <= {0, 1}
    areas = out.reshape(4, -1).sum(1).astype(np.int64)
    assert np.all(np.abs(areas - 16 * 12) < 0.4 * 16 * 12)  # jittered, same object
    assert len({a.tobytes() for a in out}) > 1


# ----------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--kind", "vae"], "--kind 'vae'"),
        (["--size", "100"], "--size 100"),
        (["--data", "/no/such/folder"], "data folder not found"),
    ],
)
def test_cli_one_line_errors(tmp_path, args, needle):
    base = {"--data": "synthetic:ultrasound:4", "--out": str(tmp_path / "run")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    res = CliRunner().invoke(main, ["gan", "train", *flat])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output


def test_cli_does_not_clobber_out(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    res = CliRunner().invoke(
        main, ["gan", "train", "--data", "synthetic:ultrasound:4", "--out", str(tmp_path / "run")]
    )
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"
    assert to_unit(np.array([-1.0, 1.0])).ravel().tolist() == [0.0, 1.0]
