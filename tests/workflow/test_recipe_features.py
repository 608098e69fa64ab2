"""The recipe options of `effconv train`: pad-and-crop and random-resized-crop augmentation, no
weight decay on depthwise kernels, flip and flip-translate test-time augmentation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv import data as data_lib
from keras_effconv import training
from keras_effconv.data.pipeline import random_resized_crop
from keras_effconv.layers import IntraChannelConv2D


def test_crop_augmentation_is_a_whole_pixel_shift_with_zero_fill():
    images = np.random.RandomState(0).randint(1, 255, (16, 32, 32, 3)).astype("float32")  # no zeros
    labels = np.eye(10, dtype="float32")[np.arange(16) % 10]
    augment = data_lib.build_augmenter("crop", (32, 32), seed=1)
    out, out_labels = (np.asarray(t) for t in augment(tf.constant(images), tf.constant(labels)))
    np.testing.assert_array_equal(out_labels, labels)
    shifted = 0
    for src, dst in zip(images, out):
        matches = []
        for flip in (False, True):
            s = src[:, ::-1] if flip else src
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    expected = np.zeros_like(s)
                    ys, yd = (slice(0, 32 - dy), slice(dy, 32)) if dy >= 0 else (slice(-dy, 32), slice(0, 32 + dy))
                    xs, xd = (slice(0, 32 - dx), slice(dx, 32)) if dx >= 0 else (slice(-dx, 32), slice(0, 32 + dx))
                    expected[yd, xd] = s[ys, xs]
                    if np.array_equal(expected, dst):
                        matches.append((flip, dy, dx))
        assert matches, "an augmented image is not a flipped/shifted copy of its source"
        shifted += (False, 0, 0) not in matches
    assert shifted > 8  # nearly every image moved


def test_random_resized_crop_gives_the_size_and_crops_of_the_image():
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (64, 1, 3))  # column index as value
    crops = [np.asarray(random_resized_crop(tf.constant(ramp), (16, 16))) for _ in range(8)]
    for crop in crops:
        assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8
        assert np.all(np.diff(crop[0, :, 0].astype(int)) >= 0)  # still a left-to-right ramp: a crop, no flip
    assert len({int(c[0, 0, 0]) for c in crops}) > 1  # different crops


def test_inception_pipeline_caches_source_size_and_yields_target_size():
    source = data_lib.open_source("synthetic:12", num_classes=None)  # 32x32 images
    train = data_lib.make_pipeline(source, batch_size=4, image_size=(16, 16), num_classes=source.num_classes,
                                   training=True, augment="inception")
    batch, labels = next(iter(train))
    assert batch.shape == (4, 16, 16, 3) and labels.shape == (4, source.num_classes)


def test_depthwise_kernels_get_no_weight_decay_by_default():
    layer = IntraChannelConv2D(3)
    dense = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((5, 5, 2)), layer, keras.layers.Flatten(), dense])
    for depthwise_decay, changed in ((False, False), (True, True)):
        optimizer = training.make_optimizer("sgd", 0.1, weight_decay=0.5, depthwise_decay=depthwise_decay)
        before = np.asarray(layer.kernel).copy()
        zero_grads = [tf.zeros_like(v) for v in model.trainable_variables]
        optimizer.apply_gradients(zip(zero_grads, model.trainable_variables))
        assert (not np.allclose(before, np.asarray(layer.kernel))) == changed


def test_evaluate_flip_averages_an_image_and_its_mirror():
    # Class 0 scores the left half's sum, class 1 a constant 1: only the mirror image gets image 0 right.
    inputs = keras.Input((4, 4, 1))
    left = keras.layers.Lambda(lambda x: x[:, :, :2, :])(inputs)
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(left)))
    dense.set_weights([np.array([[1.0, 0.0]] * 8, "float32"), np.array([0.0, 1.0], "float32")])
    images = np.zeros((2, 4, 4, 1), "float32")
    images[0, :, 2:] = 1.0  # bright right half: class 1 without TTA
    images[1, :, :2] = 1.0
    labels = np.eye(2, dtype="float32")[[0, 0]]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    plain = np.argmax(model.predict(images, verbose=0), -1)
    assert list(plain) == [1, 0]
    assert training.evaluate_tta(model, dataset, "flip") == 1.0
    assert training.evaluate_tta(model, dataset, "none") == 0.5


def test_flip_translate_tta_is_the_weighted_mean_over_six_views():
    # A dense layer on the flattened image sees every pixel's position, so each view scores differently.
    rng = np.random.RandomState(0)
    model = keras.Sequential([keras.Input((5, 6, 2)), keras.layers.Flatten(), keras.layers.Dense(3)])
    images = rng.rand(4, 5, 6, 2).astype("float32")
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    down_right, up_left = padded[:, :5, :6], padded[:, 2:, 2:]  # moved by +1 and by -1 pixel both ways

    def pair(x):
        return (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2

    expected = pair(images) / 2 + (pair(down_right) + pair(up_left)) / 4
    got = np.asarray(training.tta_predict(model, tf.constant(images), "flip-translate"))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, pair(images), atol=1e-3)  # the shifted views count
    labels = np.eye(3, dtype="float32")[np.argmax(expected, -1)]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)  # a partial last batch too
    assert training.evaluate_tta(model, dataset, "flip-translate") == 1.0


def test_tta_names_a_bad_view_set():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="`tta` must be one of none, flip, flip-translate; received tta='mirror'"):
        training.tta_predict(model, tf.zeros((1, 4, 4, 1)), "mirror")
    with pytest.raises(ValueError, match="received tta='mirror'"):
        training.TrainConfig(tta="mirror").validate()


def test_cli_tta_choices_are_the_tta_views():
    from keras_effconv.cli.common import TTA_VIEWS
    from keras_effconv.training import tta

    assert TTA_VIEWS == tta.VIEWS


def test_cli_augment_choices_are_the_pipeline_augmentations():
    # cli/train.py spells the choices out so that `--help` does not import TensorFlow: keep them in step.
    import argparse

    from keras_effconv.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "augment")
    assert tuple(action.choices) == tuple(data_lib.AUGMENTATIONS)
