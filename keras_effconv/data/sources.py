"""Data sources: parse a data spec into a `DataSource` of (image, label) examples (see `keras_effconv.data`)."""

import contextlib
import dataclasses
import glob
import os
import struct

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfrec")
AUGMENTATIONS = ("none", "basic", "crop", "randaugment", "inception")
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross", "ring")


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


# --------------------------------------------------------------------------------------------------
# Sources


def open_source(spec, *, split="train", data_dir=None, num_classes=None, download=False, tfds_builder=None):
    """Parse a data spec (see the module docstring) and open it as a `DataSource`.

    num_classes: when given, labels are checked against ``[0, num_classes)``.
    tfds_builder: inject a `tfds.core.DatasetBuilder` (tests); default ``tfds.builder(NAME)``.
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"`data` must be a non-empty data spec string; received data={spec!r}")
    if spec.startswith("tfds:"):
        name, _, tfds_split = spec[len("tfds:") :].partition(":")
        source = _tfds_source(name, tfds_split or split, data_dir, download, tfds_builder)
    elif spec == "synthetic" or spec.startswith("synthetic:"):
        source = _synthetic_source(spec)
    elif spec.startswith("tfrecord:"):
        source = _tfrecord_source(_tfrecord_files(spec[len("tfrecord:") :]), num_classes)
    else:
        path = os.path.expanduser(spec)
        if any(ch in path for ch in "*?["):
            source = _tfrecord_source(_tfrecord_files(path), num_classes)
        elif not os.path.exists(path):
            raise DataError(f"data folder or file not found: {spec!r}")
        elif os.path.isfile(path) or _list_tfrecords(path):
            source = _tfrecord_source(_tfrecord_files(path), num_classes)
        else:
            source = _folder_source(path)
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


def _list_tfrecords(folder):
    return sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if name.endswith(TFRECORD_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))
    )


def _tfrecord_files(pattern):
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        files = _list_tfrecords(pattern)
    else:
        files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(f"no TFRecord files found for {pattern!r}")
    return files


_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def _parse_labels(serialized):
    return tf.io.parse_example(serialized, {"label": _FEATURES["label"]})["label"]


def _parse_example(serialized):
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return _decode(features["image"]), tf.cast(features["label"], tf.int32)


def _decode(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def scan_tfrecords(files, num_classes=None):
    """Read every record's label once: counts, label range, and a clear error naming a corrupt file.

    Returns (num_examples, max_label). Cheap (parses only the labels: ~0.2 s for CIFAR-10's 50,000).
    """
    total, max_label = 0, -1
    for path in files:
        index = 0
        try:
            for labels in tf.data.TFRecordDataset(path).batch(4096).map(_parse_labels):
                labels = labels.numpy()
                bad = np.flatnonzero((labels < 0) | ((labels >= num_classes) if num_classes else False))
                if bad.size:
                    where = index + int(bad[0])
                    limit = f"[0, {num_classes})" if num_classes else "[0, ...)"
                    raise DataError(
                        f"label {int(labels[bad[0]])} of record {where} in {path} is outside the "
                        f"valid range {limit}"
                    )
                max_label = max(max_label, int(labels.max()) if labels.size else -1)
                index += labels.size
        except tf.errors.DataLossError as error:
            raise DataError(f"corrupt TFRecord file {path} (after record {index}): {error.message}") from None
        except tf.errors.InvalidArgumentError as error:
            raise DataError(
                f"{path} is not a TFRecord of tf.train.Example with an int64 `label` and bytes "
                f"`image` feature (record {index}): {error.message.splitlines()[0]}"
            ) from None
        total += index
    return total, max_label


def find_corrupt_tfrecord(files):
    """The first file that fails to read (or None): locates a DataLossError raised mid-pipeline."""
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path).batch(4096):
                pass
        except tf.errors.DataLossError:
            return path
    return None


@contextlib.contextmanager
def data_errors(files=()):
    """Turn input errors raised while iterating a pipeline into a `DataError` with a clear message.

    A `DataLossError` names the corrupt TFRecord file (found by re-reading `files`); failed label-range
    and image-size checks keep their message and drop TensorFlow's graph trace.
    """
    try:
        yield
    except tf.errors.DataLossError as error:
        bad = find_corrupt_tfrecord(files)
        where = f"corrupt TFRecord file {bad}" if bad else "corrupt input data"
        raise DataError(f"{where}: {error.message.splitlines()[0]}") from None
    except tf.errors.InvalidArgumentError as error:
        for line in error.message.splitlines():
            if "label out of range" in line or "mixed sizes" in line:
                raise DataError(line.strip()) from None
        raise


def _tfrecord_source(files, num_classes=None):
    num_examples, max_label = scan_tfrecords(files, num_classes)
    if num_examples == 0:
        raise DataError(f"the TFRecord files {files} hold no records")
    description = files[0] if len(files) == 1 else f"{len(files)} TFRecord files in {os.path.dirname(files[0]) or '.'}"
    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(4, len(files)), num_parallel_calls=AUTOTUNE, deterministic=True
    )
    dataset = dataset.map(_parse_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    try:
        first, _ = next(iter(dataset.take(1)))
    except tf.errors.InvalidArgumentError as error:
        raise DataError(f"cannot decode the `image` of the first record in {files[0]}: {error.message}") from None
    return DataSource(
        dataset=dataset,
        description=description,
        num_examples=num_examples,
        num_classes=num_classes or max_label + 1,
        image_shape=None,  # records may differ; the first one is only a hint.
        files=list(files),
        first_image_shape=tuple(first.shape),
    )


def _image_size_from_header(path):
    """(height, width) read from a PNG/JPEG/GIF/BMP header without decoding; None if unknown."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return height, width
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return height, width
        if head[:2] == b"BM":
            width, height = struct.unpack("<ii", head[18:26])
            return abs(height), width
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            while True:
                marker = f.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return None
                if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                    continue
                length = struct.unpack(">H", f.read(2))[0]
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">xHH", f.read(5))
                    return height, width
                f.seek(length - 2, 1)
    return None


def _folder_source(folder):
    class_names = sorted(
        name for name in os.listdir(folder) if not name.startswith(".") and os.path.isdir(os.path.join(folder, name))
    )
    if not class_names:
        raise DataError(
            f"{folder!r} has no class sub-folders; expected {folder}/<class name>/<image files> "
            "(or *.tfrecord files)"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        for root, _, files in sorted(os.walk(os.path.join(folder, name))):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, file))
                    labels.append(label)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder!r}")
    sizes = {}
    for path in paths:
        size = _image_size_from_header(path)
        if size is None:
            size = tuple(_decode(tf.io.read_file(path)).shape[:2])
        sizes.setdefault(size, path)
    image_shape, mixed = None, None
    if len(sizes) == 1:
        image_shape = next(iter(sizes)) + (3,)
    else:
        (size_a, path_a), (size_b, path_b) = list(sizes.items())[:2]
        mixed = (
            f"images in {folder!r} have mixed sizes ({len(sizes)} different, e.g. {path_a} is "
            f"{size_a[0]}x{size_a[1]} and {path_b} is {size_b[0]}x{size_b[1]})"
        )

    def read(path, label):
        return _decode(tf.io.read_file(path)), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, "int32")))
    dataset = dataset.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
    return DataSource(
        dataset=dataset,
        description=f"image folder {folder}",
        num_examples=len(paths),
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=image_shape,
        mixed_sizes=mixed,
    )


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


def _synthetic_source(spec):
    parts = spec.split(":")[1:]
    try:
        num_examples = int(parts[0]) if parts else 1000
        seed = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise DataError(f"synthetic data spec is synthetic[:N[:SEED]]; received {spec!r}") from None
    if num_examples <= 0 or len(parts) > 2:
        raise DataError(f"synthetic data spec is synthetic[:N[:SEED]] with N > 0; received {spec!r}")
    images, labels = synthetic_shapes(num_examples, seed=seed)
    return DataSource(
        dataset=tf.data.Dataset.from_tensor_slices((images, labels)),
        description=f"synthetic shapes (n={num_examples}, seed={seed})",
        num_examples=num_examples,
        num_classes=len(SYNTHETIC_CLASSES),
        class_names=list(SYNTHETIC_CLASSES),
        image_shape=images.shape[1:],
    )


def synthetic_shapes(num_examples, seed=0, size=32):
    """A deterministic, learnable dataset: one coloured shape per image; the label is the shape.

    Classes: circle, square, triangle, cross, ring (`SYNTHETIC_CLASSES`). Position, size, colour,
    background and noise vary, so a model must learn the shape, not the colour or the place.
    Returns (uint8 images [N, size, size, 3], int32 labels [N]); balanced classes.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(num_examples) % len(SYNTHETIC_CLASSES)).astype("int32")
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    images = np.empty((num_examples, size, size, 3), "uint8")
    for i, label in enumerate(labels):
        r = rng.uniform(0.18, 0.32) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
        dy, dx = yy - cy, xx - cx
        if label == 0:  # circle
            mask = dy**2 + dx**2 <= r**2
        elif label == 1:  # square
            mask = (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
        elif label == 2:  # triangle, apex up
            mask = (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.6)
        elif label == 3:  # cross
            w = 0.3 * r
            mask = ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
        else:  # ring
            d2 = dy**2 + dx**2
            mask = (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
        background = rng.uniform(0, 90, size=3)
        colour = rng.uniform(130, 255, size=3)
        image = np.where(mask[..., None], colour, background) + rng.normal(0, 12, (size, size, 3))
        images[i] = np.clip(image, 0, 255).astype("uint8")
    return images, labels
