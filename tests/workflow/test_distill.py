"""Distillation (`--distill-from`, `--distill-weight`; issue 11): the mixed targets, a run, bad options."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv import training
from keras_effconv.applications import DemoCNN
from keras_effconv.training import distill
from tests.workflow.test_cli import TRAIN

SIZE = (16, 16)
ARGS = ("--data", "synthetic:24", "--image-size", "16,16", "--augment", "crop", "--val-split", "0.25")


def _teacher_file(tmp_path, classes=5, softmax=True):
    model = DemoCNN(input_shape=SIZE + (3,), classes=classes)
    if not softmax:  # a logits teacher: the same net with a linear last layer
        dense = keras.layers.Dense(classes)
        logits = keras.Model(model.input, dense(model.get_layer("avg_pool").output))
        dense.set_weights(model.get_layer("predictions").get_weights())
        model = logits
    path = str(tmp_path / f"teacher{classes}{'' if softmax else '-logits'}.keras")
    model.save(path)
    return path, model


@pytest.mark.parametrize("softmax", [True, False])
def test_mixed_target_is_weighted_sum_of_labels_and_teacher_probabilities(tmp_path, softmax):
    _, teacher = _teacher_file(tmp_path, softmax=softmax)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (4,) + SIZE + (3,)), tf.float32)
    labels = tf.one_hot([0, 1, 2, 4], 5)
    scores = np.asarray(teacher(images, training=False))
    p = scores if softmax else tf.nn.softmax(scores).numpy()
    assert not np.allclose(p, labels)  # the teacher's probabilities differ from the labels
    out_images, target = distill.distill_targets(teacher, 0.3)(images, labels)
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_allclose(target, 0.7 * labels.numpy() + 0.3 * p, atol=1e-5)
    np.testing.assert_allclose(np.sum(target, -1), 1.0, atol=1e-5)
    _, sparse_target = distill.distill_targets(teacher, 0.3)(images, tf.constant([0, 1, 2, 4]))
    np.testing.assert_allclose(sparse_target, target, atol=1e-6)


def test_distilled_run_records_the_options_and_keeps_only_the_student(cli, tmp_path):
    teacher, _ = _teacher_file(tmp_path)
    out = tmp_path / "run"
    code, stdout, err = cli(*TRAIN, *ARGS, "--epochs", "1", "--output", out, "--tta", "none",
                            "--distill-from", teacher, "--distill-weight", "0.7")
    assert code == 0, err
    with open(out / "run.json") as f:
        config = json.load(f)["config"]
    assert (config["distill_from"], config["distill_weight"]) == (teacher, 0.7)
    student = training.load_model(str(out / "best.keras"))
    assert student.count_params() == DemoCNN(input_shape=SIZE + (3,), classes=5).count_params()
    from keras_effconv.cli.train import command_line
    from keras_effconv.training.recipes import default_run_name
    from keras_effconv.training.recipes import parse_args

    args = parse_args("cifar10", ["--distill-from", teacher, "--distill-weight", "0.7"])
    assert f"--distill-from {teacher} --distill-weight 0.7" in command_line(args)
    assert default_run_name(args) == "EffResNet20-15ep-seed0-distill-teacher5-w0.7"


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan"])
def test_bad_distill_weight(cli, tmp_path, value):
    code, _, err = cli(*TRAIN, *ARGS, "--output", tmp_path / "out", "--distill-from", "DemoCNN:x",
                       "--distill-weight", value)
    assert code == 2 and "--distill-weight" in err and repr(value) in err, err
    with pytest.raises(ValueError, match="distill_weight"):
        training.TrainConfig(distill_from="x.keras", distill_weight=float(value)).validate()


@pytest.mark.parametrize("spec", ["missing/teacher.keras", "NoSuchModel:cifar10", "ResNet20"])
def test_bad_distill_from(cli, tmp_path, spec):
    code, _, err = cli(*TRAIN, *ARGS, "--output", tmp_path / "out", "--distill-from", spec)
    assert code == 2 and "--distill-from" in err and spec in err, err
    assert not (tmp_path / "out").exists()


def test_teacher_with_other_classes_or_size_is_refused(cli, tmp_path):
    teacher, _ = _teacher_file(tmp_path, classes=3)
    code, _, err = cli(*TRAIN, *ARGS, "--output", tmp_path / "out", "--distill-from", teacher)
    assert code == 2 and "--distill-from" in err and "3 classes" in err and "has 5" in err, err
    code, _, err = cli(*TRAIN, "--data", "synthetic:24", "--output", tmp_path / "out32", "--distill-from",
                       _teacher_file(tmp_path)[0])  # the data at 32x32, the teacher at 16x16
    assert code == 2 and "--distill-from" in err and "input shape" in err, err


def test_custom_loop_is_refused(cli, tmp_path):
    teacher, _ = _teacher_file(tmp_path)
    code, _, err = cli(*TRAIN, *ARGS, "--output", tmp_path / "out", "--distill-from", teacher, "--loop", "custom")
    assert code == 2 and "--distill-from" in err and "custom" in err, err
    assert not os.path.exists(tmp_path / "out")
