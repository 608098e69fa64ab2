"""keras_effconv.data: sources, validation split, pipeline and clear errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv import data
from tests.workflow.conftest import make_folder
from tests.workflow.conftest import make_tfrecords
from tests.workflow.conftest import write_image


def test_image_folder_source(image_folder):
    source = data.open_source(image_folder)
    assert source.class_names == ["class_0", "class_1", "class_2"]
    assert (source.num_examples, source.num_classes, source.image_shape) == (18, 3, (16, 16, 3))
    labels = [int(y) for _, y in source.dataset]
    assert labels == sorted(labels) and set(labels) == {0, 1, 2}


def test_folder_image_size(tmp_path):
    for i, fmt in enumerate(("png", "jpg")):
        write_image(str(tmp_path / "f" / "a" / f"x{i}.{fmt}"), 13, 21, seed=i, fmt=fmt)
    assert data.open_source(str(tmp_path / "f")).image_shape == (13, 21, 3)


def test_tfrecord_source_and_split(tfrecord_dir):
    source = data.open_source(tfrecord_dir)
    assert (source.num_examples, source.num_classes, source.first_image_shape) == (20, 4, (16, 16, 3))
    train, val = data.split_validation(source, 0.25)
    assert (train.num_examples, val.num_examples) == (15, 5)

    def labels(part):
        return [int(y) for _, y in part.dataset]

    assert len(labels(train)) == 15 and len(labels(val)) == 5
    assert labels(val) == labels(data.split_validation(data.open_source(tfrecord_dir), 0.25)[1])  # deterministic


def test_synthetic_is_deterministic_and_balanced():
    a, la = data.synthetic_shapes(50, seed=3)
    b, lb = data.synthetic_shapes(50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(la).tolist() == [10] * 5


@pytest.mark.slow
def test_pipeline_augment_resize_and_mix():
    d = data.load("synthetic:40", batch_size=8, image_size=(24, 24), val_split=0.2, augment="randaugment",
                  mixup=0.2, cutmix=1.0)
    assert (d.num_train, d.num_validation, d.image_size) == (32, 8, (24, 24))
    x, y = next(iter(d.train))
    assert x.shape == (8, 24, 24, 3) and y.shape == (8, 5) and x.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0
    np.testing.assert_allclose(tf.reduce_sum(y, -1), 1.0, atol=1e-5)
    assert sum(len(x) for x, _ in d.validation) == 8


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        source = data.open_source("tfds:cifar10:train")
        assert source.num_classes == 10 and source.num_examples == 12
        d = data.load("tfds:cifar10", batch_size=4, val_split=0.25, augment="none")
        x, y = next(iter(d.train))
        assert x.shape == (4, 32, 32, 3) and y.shape == (4, 10)


def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="not found"):
        data.open_source(str(tmp_path / "nope"))


def test_folder_without_classes(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="class sub-folders"):
        data.open_source(str(tmp_path / "empty"))


def test_mixed_sizes_need_resize(tmp_path):
    folder = make_folder(tmp_path / "mixed", mixed=True)
    with pytest.raises(data.DataError, match="mixed sizes.*--image-size"):
        data.load(folder, batch_size=4)
    d = data.load(folder, batch_size=4, image_size=(16, 16))  # resizing is fine
    assert next(iter(d.train))[0].shape == (4, 16, 16, 3)


def test_mixed_sizes_in_tfrecords_fail_clearly(tmp_path):
    paths = make_tfrecords(str(tmp_path / "a"), shards=1, per_shard=4)
    make_tfrecords(str(tmp_path / "b"), shards=1, per_shard=4, size=(20, 20))
    os.replace(str(tmp_path / "b" / os.path.basename(paths[0])), str(tmp_path / "a" / "z.tfrecord"))
    d = data.load(str(tmp_path / "a"), batch_size=8, augment="none")
    with pytest.raises(data.DataError, match="mixed sizes"):
        with data.data_errors(d.files):
            list(d.train)


def test_corrupt_tfrecord_names_the_file(tmp_path):
    paths = make_tfrecords(str(tmp_path / "r"), shards=2, per_shard=5)
    blob = bytearray(open(paths[1], "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    open(paths[1], "wb").write(bytes(blob))
    with pytest.raises(data.DataError, match="corrupt TFRecord file .*train-00001-of-00002"):
        data.open_source(str(tmp_path / "r"))
    assert data.find_corrupt_tfrecord(paths) == paths[1]


def test_labels_out_of_range(tmp_path):
    make_tfrecords(str(tmp_path / "r"), shards=1, per_shard=4, labels=[0, 1, 7, 2])
    with pytest.raises(data.DataError, match=r"label 7 of record 2 .* outside the valid range \[0, 5\)"):
        data.open_source(str(tmp_path / "r"), num_classes=5)
    make_tfrecords(str(tmp_path / "n"), shards=1, per_shard=2, labels=[0, -1])
    with pytest.raises(data.DataError, match="label -1"):
        data.open_source(str(tmp_path / "n"))


def test_in_pipeline_label_check():
    source = data.DataSource(
        dataset=tf.data.Dataset.from_tensor_slices((np.zeros((3, 4, 4, 3), "uint8"), np.array([0, 1, 9], "int32"))),
        description="test data", num_examples=3, num_classes=3, image_shape=(4, 4, 3),
    )
    source.dataset = source.dataset.map(data.sources._label_range_check(3, "test data"))
    with pytest.raises(data.DataError, match=r"label out of range \[0, 3\) in test data"):
        with data.data_errors():
            list(source.dataset)
