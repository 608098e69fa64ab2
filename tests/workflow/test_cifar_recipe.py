"""Smoke test of the CIFAR-10 recipe (recipes/cifar10/train.py) on a few generated TFRecords.

Never reads the shared CIFAR-10 data: the records are generated in tmp_path.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "cifar10", "train.py")


def load_recipe():
    spec = importlib.util.spec_from_file_location("cifar10_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_records(folder, n=40, shards=2, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for shard in range(shards):
        path = os.path.join(folder, f"train-{shard:05d}-of-{shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(shard, n, shards):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(image).numpy()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return folder


def test_augmenter_is_per_example_integer_shift():
    recipe = load_recipe()
    images = np.tile(np.arange(1, 33, dtype="float32")[None, None, :, None], (16, 32, 1, 3))  # x-ramp 1..32
    out, _ = recipe.make_augmenter(pad=4, flip=False, seed=1)(tf.constant(images), tf.zeros([16]))
    out = out.numpy()
    assert set(np.unique(out)) <= set(range(0, 33))  # original pixel values or the zero fill: no blur
    shifts = []
    for image in out:
        row = image[16, :, 0]
        inside = row[row > 0]
        shifts.append(int(inside[0]) - 1 if row[0] > 0 else -int(np.argmax(row > 0)))
        np.testing.assert_array_equal(np.diff(inside), 1)  # a shifted, unscaled ramp
    assert all(abs(s) <= 4 for s in shifts)
    assert len(set(shifts)) > 1  # offsets differ across the batch (not one crop per batch)


@pytest.mark.slow
def test_recipe_trains_and_writes_results(tmp_path):
    recipe = load_recipe()
    data = write_records(str(tmp_path / "records"))
    results = str(tmp_path / "results.json")
    config = recipe.parse_args([
        "--model", "EffResNet20", "--data", data, "--output", str(tmp_path / "run"), "--epochs", "2",
        "--batch-size", "8", "--steps-per-epoch", "2", "--verbose", "0", "--no-depthwise-decay",
        "--results", results, "--run-name", "smoke",
    ])
    assert config.batch_size == 8 and not config.depthwise_decay
    result = recipe.run(config, log=lambda *_: None)
    assert result["num_train"] == 36 and result["num_validation"] == 4  # every 10th record validates
    assert result["steps_per_epoch"] == 2 and len(result["history"]["val_accuracy"]) == 2
    assert result["macs"] > 0 and result["params"] > 0
    assert np.isfinite(result["history"]["loss"]).all()
    for name in ("best.keras", "last.keras", "log.csv", "result.json"):
        assert os.path.exists(tmp_path / "run" / name)
    with open(results) as f:
        assert json.load(f)["runs"]["smoke"]["model"] == "EffResNet20"
