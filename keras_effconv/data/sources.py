"""Data sources: parse a data spec into a `DataSource` of (image, label) examples (see `keras_effconv.data`).

Image folders live in `folders.py`, TFRecords in `tfrecords.py`, generated data in `synthetic.py`;
TensorFlow Datasets and the label-range check are here.
"""

import os

import tensorflow as tf

from keras_effconv.data.base import AUGMENTATIONS  # noqa: F401 - re-exported
from keras_effconv.data.base import AUTOTUNE
from keras_effconv.data.base import IMAGE_EXTENSIONS  # noqa: F401
from keras_effconv.data.base import SYNTHETIC_CLASSES  # noqa: F401
from keras_effconv.data.base import TFRECORD_EXTENSIONS  # noqa: F401
from keras_effconv.data.base import Data  # noqa: F401
from keras_effconv.data.base import DataError
from keras_effconv.data.base import DataSource
from keras_effconv.data.base import check_bad_image_policy
from keras_effconv.data.folders import folder_source
from keras_effconv.data.synthetic import synthetic_shapes  # noqa: F401
from keras_effconv.data.synthetic import synthetic_source
from keras_effconv.data.tfrecords import data_errors  # noqa: F401
from keras_effconv.data.tfrecords import find_corrupt_tfrecord  # noqa: F401
from keras_effconv.data.tfrecords import list_tfrecords
from keras_effconv.data.tfrecords import scan_tfrecords  # noqa: F401
from keras_effconv.data.tfrecords import tfrecord_files
from keras_effconv.data.tfrecords import tfrecord_source


def open_source(spec, *, split="train", data_dir=None, num_classes=None, download=False, tfds_builder=None,
                on_bad_image="error"):
    """Parse a data spec (see the module docstring) and open it as a `DataSource`.

    num_classes: when given, labels are checked against ``[0, num_classes)``.
    tfds_builder: inject a `tfds.core.DatasetBuilder` (tests); default ``tfds.builder(NAME)``.
    on_bad_image: "error" (default) rejects a folder or TFRecord source holding undecodable images,
    naming them; "skip" leaves them out and lists them in `DataSource.skipped`.
    """
    check_bad_image_policy(on_bad_image)
    if not isinstance(spec, str) or not spec:
        raise DataError(f"`data` must be a non-empty data spec string; received data={spec!r}")
    if spec.startswith("tfds:"):
        name, _, tfds_split = spec[len("tfds:") :].partition(":")
        source = _tfds_source(name, tfds_split or split, data_dir, download, tfds_builder)
    elif spec == "synthetic" or spec.startswith("synthetic:"):
        source = synthetic_source(spec)
    elif spec.startswith("tfrecord:"):
        source = tfrecord_source(tfrecord_files(spec[len("tfrecord:") :]), num_classes, on_bad_image)
    else:
        path = os.path.expanduser(spec)
        if any(ch in path for ch in "*?["):
            source = tfrecord_source(tfrecord_files(path), num_classes, on_bad_image)
        elif not os.path.exists(path):
            raise DataError(f"data folder or file not found: {spec!r}")
        elif os.path.isfile(path) or list_tfrecords(path):
            source = tfrecord_source(tfrecord_files(path), num_classes, on_bad_image)
        else:
            source = folder_source(path, on_bad_image)
    if num_classes is not None:
        if source.num_classes is not None and source.num_classes > num_classes:
            raise DataError(
                f"{source.description} has {source.num_classes} classes but the model has "
                f"num_classes={num_classes}"
            )
        source.num_classes = max(num_classes, source.num_classes or 0)
    if source.num_classes is not None:
        source.dataset = source.dataset.map(_label_range_check(source.num_classes, source.description))
    return source


def _label_range_check(num_classes, description):
    message = f"label out of range [0, {num_classes}) in {description}"

    def check(image, label):
        with tf.control_dependencies(
            [
                tf.debugging.assert_non_negative(label, message=message),
                tf.debugging.assert_less(label, tf.cast(num_classes, label.dtype), message=message),
            ]
        ):
            return image, tf.identity(label)

    return check


def _tfds_source(name, split, data_dir, download, builder):
    import tensorflow_datasets as tfds

    if not name:
        raise DataError("`tfds:` needs a dataset name, e.g. tfds:cifar10 or tfds:cifar10:test")
    try:
        builder = builder or tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError types
        raise DataError(f"unknown TFDS dataset {name!r}: {error}") from None
    if download:
        builder.download_and_prepare()
    try:
        dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    except Exception as error:
        raise DataError(
            f"cannot read TFDS dataset {name!r} split {split!r} from data_dir={builder.data_dir!r}: "
            f"{error}. Prepare it first (`tfds build {name} --data_dir DIR` on a machine with internet), "
            "then pass --data-dir DIR"
        ) from None
    info = builder.info
    num_classes = class_names = num_examples = None
    label = info.features["label"] if "label" in info.features else None
    if label is not None and hasattr(label, "num_classes"):
        num_classes = label.num_classes
        class_names = list(label.names)
    try:
        num_examples = info.splits[split].num_examples
    except (KeyError, ValueError):
        pass
    image_shape = None
    if "image" in info.features and None not in (info.features["image"].shape or (None,))[:2]:
        image_shape = tuple(info.features["image"].shape[:2]) + (3,)

    def to_rgb(image, label):
        channels = image.shape[-1]
        if channels == 1:
            image = tf.tile(image, [1, 1, 3])
        elif channels is None:
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3])
        else:
            image = image[..., :3]
        image.set_shape([None, None, 3])
        return tf.cast(image, tf.uint8), tf.cast(label, tf.int32)

    dataset = dataset.map(to_rgb, num_parallel_calls=AUTOTUNE, deterministic=True)
    if num_examples is None:
        num_examples = int(dataset.reduce(0, lambda count, _: count + 1))
    return DataSource(
        dataset=dataset,
        description=f"tfds:{name}:{split}",
        num_examples=num_examples,
        num_classes=num_classes,
        class_names=class_names,
        image_shape=image_shape,
    )
