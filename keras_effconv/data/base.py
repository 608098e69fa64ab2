"""What every data source shares: constants, `DataError`, `DataSource`, `Data`, image decoding and
the policy for undecodable images (`on_bad_image`)."""

import dataclasses

import tensorflow as tf

from keras_effconv import _quiet

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfrec")
AUGMENTATIONS = ("none", "basic", "crop", "randaugment", "inception")
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross", "ring")
BAD_IMAGE_POLICIES = ("error", "skip")


class DataError(ValueError):
    """Bad input data (missing folder, corrupt file, label out of range, ...), with a clear message."""


@dataclasses.dataclass
class DataSource:
    """Unbatched ``(image uint8 [H, W, 3], label int32 [])`` examples and what is known about them."""

    dataset: tf.data.Dataset
    description: str
    num_examples: int = None
    num_classes: int = None
    class_names: list = None
    image_shape: tuple = None  # (H, W, 3) when every image has that size; None if unknown or mixed.
    mixed_sizes: str = None  # a message naming two files of different sizes, when known.
    files: list = dataclasses.field(default_factory=list)  # TFRecord files, for error messages.
    first_image_shape: tuple = None  # shape of the first image (a hint when `image_shape` is unknown).
    skipped: list = dataclasses.field(default_factory=list)  # undecodable images left out (on_bad_image="skip").


@dataclasses.dataclass
class Data:
    """What `load` returns: batched pipelines and the facts the training loop needs."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_train: int
    num_validation: int
    num_classes: int
    class_names: list
    image_size: tuple
    description: str
    files: list
    skipped: list = dataclasses.field(default_factory=list)  # undecodable images left out, both sources.
    # Builds a second training pipeline (same augmentation, its own seed, no cache), for statistics
    # gathered outside the training steps (--ema's BatchNorm re-estimation) without moving the
    # training pipeline's shuffle and augmentation streams. Built only when called.
    make_calibration: object = None


def decode(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def check_bad_image_policy(on_bad_image):
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"`on_bad_image` must be one of {BAD_IMAGE_POLICIES}; received on_bad_image={on_bad_image!r}")


def decodable(items, read):
    """{index: (height, width)} of the `items` (a list or a dataset) that `read(item)` decodes.

    One parallel tf.data pass; nothing is kept but the sizes.

    `read` maps an item to encoded image bytes inside tf.data; items whose read or decode fails are
    missing from the result.
    """
    dataset = items if isinstance(items, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(items)
    dataset = dataset.enumerate()
    dataset = dataset.map(lambda i, item: (i, tf.shape(decode(read(item)))[:2]), num_parallel_calls=AUTOTUNE)
    good = {}
    with _quiet.c_stderr_quieted():
        for index, shape in dataset.ignore_errors().batch(4096).as_numpy_iterator():
            good.update(zip(index.tolist(), map(tuple, shape.tolist())))
    return good


def apply_bad_image_policy(bad, on_bad_image, where):
    """Raise a DataError naming the undecodable `bad` items (policy "error"), else return them."""
    if bad and on_bad_image == "error":
        raise DataError(
            f"{len(bad)} undecodable image(s) in {where}: {_listing(bad)}; fix or remove them, or pass "
            "--on-bad-image skip (on_bad_image='skip') to leave them out"
        )
    return list(bad)


def skipped_message(skipped):
    """'skipped N undecodable image(s): a, b, c and K more' (empty string when nothing was skipped)."""
    if not skipped:
        return ""
    return f"skipped {len(skipped)} undecodable image(s): {_listing(skipped)}"


def _listing(items, shown=3):
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")
