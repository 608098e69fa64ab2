"""--ema: the optimizer's moving average of the weights is what validation scores and the checkpoints
hold, while the training steps keep updating the raw weights."""

import argparse
import os

import keras
import numpy as np
import pytest

from keras_effconv import data as data_lib
from keras_effconv import training
from keras_effconv.cli import train as train_cli
from keras_effconv.training import resume
from tests.workflow.conftest import validation_loss


def _config(out, ema):
    return training.TrainConfig(model="DemoCNN", data="synthetic:24", val_split=0.25, epochs=3, batch_size=8,
                                lr=0.2, warmup_epochs=0, ema=ema, output=str(out), verbose=0, tta="none",
                                augment="none")  # no random augmentation: the two runs see the same batches


def _stats(model):
    return [keras.ops.convert_to_numpy(v) for v in training.batchnorm_statistics(model)]


class _RawStats(keras.callbacks.Callback):
    """BatchNorm moving statistics at each epoch's start, when the raw weights are in the model."""

    def __init__(self):
        super().__init__()
        self.stats = []

    def on_epoch_begin(self, epoch, logs=None):
        self.stats.append(_stats(self.model))


def _rows(out):
    _, rows = resume.read_log(os.path.join(out, "log.csv"))
    return [resume.row_metrics(row) for row in rows]


def test_ema_scores_and_checkpoints_the_average_but_trains_the_raw_weights(tmp_path):
    runs, recorders = [], []
    for name, ema in (("plain", 0.0), ("ema", 0.6)):
        keras.utils.set_random_seed(0)  # the same shuffles too
        recorders.append(_RawStats())
        runs.append(training.train(_config(tmp_path / name, ema), callbacks=[recorders[-1]], log=lambda *_: None))
    plain, averaged = runs
    plain_rows, ema_rows = _rows(plain.output), _rows(averaged.output)
    # The same raw trajectory: each epoch trains from the raw weights, not from the average, and the
    # BatchNorm statistics re-estimated for the average are swapped out again with it.
    np.testing.assert_allclose([r["loss"] for r in ema_rows], [r["loss"] for r in plain_rows], rtol=1e-4)
    for raw, ema_run in zip(*(r.stats for r in recorders)):
        assert all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(raw, ema_run))
    # ...but validation scores the average, and the checkpoints hold the weights that were scored.
    assert abs(ema_rows[-1]["val_loss"] - plain_rows[-1]["val_loss"]) > 1e-3
    assert validation_loss(averaged.last_path) == pytest.approx(ema_rows[-1]["val_loss"], rel=1e-5)
    assert validation_loss(averaged.best_path) == pytest.approx(ema_rows[averaged.best_epoch]["val_loss"], rel=1e-5)
    final = averaged.model.get_weights()  # the model train returns holds the average too
    saved = training.load_model(averaged.last_path)
    assert all(np.allclose(a, b) for a, b in zip(final, saved.get_weights()))
    # Its BatchNorm statistics are those of the average on the calibration batches, not the raw ones.
    stats = _stats(saved)
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(stats, _stats(training.load_model(plain.last_path))))
    data = data_lib.load("synthetic:24", batch_size=8, val_split=0.25, augment="none", seed=0)
    training.reestimate_batchnorm(saved, [images for images, _ in data.make_calibration().take(10)])
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(stats, _stats(saved)))


def test_reestimate_batchnorm_sets_the_mean_of_the_batch_statistics():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(momentum=0.9)])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=k, scale=k + 1, size=(5, 4, 4, 3)).astype("float32") for k in range(3)]
    training.reestimate_batchnorm(model, batches)
    layer = model.layers[0]
    np.testing.assert_allclose(layer.moving_mean, np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0),
                               rtol=1e-5)
    assert layer.momentum == 0.9


def test_ema_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"`ema` must be a number >= 0 and < 1; received ema=1.0"):
        training.TrainConfig(ema=1.0).validate()


def test_ema_is_refused_by_the_custom_loop(tmp_path):
    config = _config(tmp_path / "out", 0.9)
    config.loop = "custom"
    with pytest.raises(ValueError, match=r"--ema 0.9 is not supported by the custom training loop"):
        training.train(config)
    assert not os.path.exists(config.output)


def test_cli_ema_flag_reaches_the_config_and_rejects_bad_values(cli, tmp_path):
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    assert train_cli.config_from_args(parser.parse_args(["--ema", "0.999"])).ema == 0.999
    assert train_cli.config_from_args(parser.parse_args([])).ema == 0.0
    code, _, err = cli("train", "--model", "DemoCNN", "--data", "synthetic:8", "--ema", "1.5",
                       "--output", tmp_path / "out")
    assert code == 2 and "--ema" in err and "1.5" in err, err
