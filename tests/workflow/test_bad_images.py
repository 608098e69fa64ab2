"""Undecodable images (issue 16): rejected up front by default, naming the file or the TFRecord file
and record; skipped and counted with --on-bad-image skip; no traceback in the middle of an epoch."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv import data
from tests.workflow.conftest import example
from tests.workflow.conftest import make_folder
from tests.workflow.conftest import make_tfrecords
from tests.workflow.test_cli import TRAIN

ONE_EPOCH = (*TRAIN[:3], "--epochs", "1", *TRAIN[5:])


def _spoil_folder(root):
    """An image folder with a garbage .jpg and a truncated .png among good images."""
    folder = make_folder(root, classes=2, per_class=4)
    bad = [os.path.join(folder, "class_0", "img_1.jpg"), os.path.join(folder, "class_1", "img_2.png")]
    with open(bad[0], "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    with open(bad[1], "r+b") as f:
        f.truncate(60)
    return folder, bad


def test_folder_with_bad_images_is_rejected_up_front(cli, tmp_path):
    folder, bad = _spoil_folder(tmp_path / "images")
    out = tmp_path / "out"
    code, text, err = cli(*ONE_EPOCH, "--data", folder, "--output", out)
    assert code == 2 and "Traceback" not in err and "Epoch" not in text
    assert "2 undecodable image(s)" in err and all(path in err for path in bad) and "--on-bad-image skip" in err
    assert not out.exists()


def test_folder_with_bad_images_skipped(cli, tmp_path):
    folder, bad = _spoil_folder(tmp_path / "images")
    out = tmp_path / "out"
    code, text, err = cli(*ONE_EPOCH, "--data", folder, "--output", out, "--on-bad-image", "skip", "--val-split", "0")
    assert code == 0, err
    assert "Skipped 2 undecodable image(s)" in text and bad[0] in text
    assert json.load(open(out / "run.json"))["num_train"] == 6
    code, text, err = cli("evaluate", out / "best.keras", "--data", folder, "--on-bad-image", "skip", "--json")
    assert code == 0 and json.loads(text)["examples"] == 6 and "skipped 2 undecodable image(s)" in err


def _records_with_a_bad_image(root):
    paths = make_tfrecords(str(root), shards=2, per_shard=5, classes=3)
    rng = np.random.default_rng(1)
    with tf.io.TFRecordWriter(paths[1]) as writer:  # rewrite shard 1 with record 3 undecodable
        for i in range(5):
            record = example(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), i % 3)
            if i == 3:
                parsed = tf.train.Example.FromString(record)
                parsed.features.feature["image"].bytes_list.value[0] = b"\x89PNG broken"
                record = parsed.SerializeToString()
            writer.write(record)
    return paths


def test_tfrecord_bad_image_named_by_file_and_record(tmp_path):
    paths = _records_with_a_bad_image(tmp_path / "r")
    with pytest.raises(data.DataError, match=rf"1 undecodable image\(s\).*{os.path.basename(paths[1])} record 3"):
        data.open_source(str(tmp_path / "r"))
    source = data.open_source(str(tmp_path / "r"), on_bad_image="skip")
    assert source.num_examples == 9 and source.skipped == [f"{paths[1]} record 3"]
    labels = [int(label) for _, label in source.dataset]
    assert len(labels) == 9  # the bad record is filtered out, every other record is kept


def test_train_skips_a_bad_tfrecord_image(cli, tmp_path):
    _records_with_a_bad_image(tmp_path / "r")
    code, text, err = cli(*ONE_EPOCH, "--data", tmp_path / "r", "--output", tmp_path / "out", "--on-bad-image", "skip",
                          "--val-split", "0.34")
    assert code == 0, err
    assert "Skipped 1 undecodable image(s)" in text and "record 3" in text


def test_truncated_tfrecord_names_the_right_record(tmp_path):
    paths = make_tfrecords(str(tmp_path / "r"), shards=1, per_shard=30)
    size = os.path.getsize(paths[0])
    with open(paths[0], "r+b") as f:  # cut inside record 20 (records have the same size)
        f.truncate(size * 20 // 30 + 10)
    with pytest.raises(data.DataError, match=r"record 20 \(0-based\) is truncated or damaged, after 20 good"):
        data.open_source(paths[0])


def test_mixed_sizes_error_suggests_only_options_train_has(cli, tmp_path):
    folder = make_folder(tmp_path / "mixed", mixed=True)
    code, _, err = cli(*TRAIN, "--data", folder, "--output", tmp_path / "out")
    assert code == 2 and "--image-size" in err and "--input-shape" not in err
