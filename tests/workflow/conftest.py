"""Tiny generated datasets (image folders, TFRecords) and a CLI runner for the workflow tests."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.cli.main import main


def write_image(path, height, width, seed, fmt="png"):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    encoded = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, encoded)
    return image


def make_folder(root, classes=3, per_class=6, size=(16, 16), mixed=False):
    for c in range(classes):
        for i in range(per_class):
            h, w = size
            if mixed and c == classes - 1 and i == 0:
                h, w = h + 4, w + 2
            fmt = "jpg" if i % 2 else "png"
            write_image(os.path.join(root, f"class_{c}", f"img_{i}.{fmt}"), h, w, seed=c * 100 + i, fmt=fmt)
    return str(root)


def example(image, label):
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def make_tfrecords(root, shards=2, per_shard=10, classes=4, size=(16, 16), labels=None):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    paths, k = [], 0
    for s in range(shards):
        path = os.path.join(root, f"train-{s:05d}-of-{shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(per_shard):
                image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
                label = labels[k] if labels is not None else k % classes
                writer.write(example(image, label))
                k += 1
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path):
    return make_folder(tmp_path / "images")


@pytest.fixture
def tfrecord_dir(tmp_path):
    make_tfrecords(str(tmp_path / "records"))
    return str(tmp_path / "records")


@pytest.fixture
def cli(capsys):
    """Run `effconv ARGS...` in-process; returns (exit status, stdout, stderr)."""

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def leftovers(folder):
    """Temporary files/folders an atomic writer would leave behind."""
    return [name for name in os.listdir(folder) if name.startswith(".") or ".tmp" in name]


def validation_loss(path, data="synthetic:24", batch_size=8, val_split=0.25):
    """The validation loss of the model saved at `path`, on the split `train` carves from `data`."""
    from keras_effconv import data as data_lib
    from keras_effconv import training

    pipelines = data_lib.load(data, batch_size=batch_size, val_split=val_split)
    return training.evaluate(training.load_model(path), pipelines.validation)["loss"]
