"""Image-classification input pipelines for training, evaluation, calibration and the demo.

One `tf.data` pipeline for every source, chosen by a *data spec* string:

- ``tfds:NAME[:SPLIT]``: a TensorFlow Datasets dataset, e.g. ``tfds:cifar10`` or
  ``tfds:cifar10:train[:90%]`` (read from ``data_dir``; it must already be prepared there unless
  ``download=True``).
- ``PATH`` to a folder of class sub-folders (``keras.utils.image_dataset_from_directory`` layout):
  ``PATH/<class name>/<image>.{jpg,jpeg,png,bmp,gif}``; classes are the sorted folder names.
- ``PATH`` to a TFRecord file, a glob (``data/train-*.tfrecord``) or a folder holding ``*.tfrecord``
  / ``*.tfrec`` files: ``tf.train.Example`` records with ``image`` (encoded JPEG/PNG bytes) and
  ``label`` (int64) features. ``tfrecord:PATTERN`` forces this reading.
- ``synthetic[:N[:SEED]]``: a generated, deterministic, learnable shapes dataset (32x32 RGB, 5
  classes), for the demo and the tests; works offline.

`open_source(spec)` gives a `DataSource` (unbatched ``(uint8 image, int32 label)`` examples plus what
is known about them); `split_validation` carves a deterministic validation subset out of it;
`make_pipeline` resizes/crops, caches, shuffles, batches, augments (core Keras layers: RandomFlip,
RandomTranslation, RandAugment, MixUp, CutMix) and prefetches. `load` does all three.

Images leave the pipeline as float32 RGB in [0, 255]; the models built by `keras_effconv.training`
carry their own rescaling layer, so the saved and exported models take raw pixels too.
"""

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
AUGMENTATIONS = ("none", "basic", "randaugment")
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


# --------------------------------------------------------------------------------------------------
# Validation split


def split_validation(source, fraction):
    """Deterministically carve ``floor(n * fraction)`` examples, evenly spread, into a validation set.

    Example i goes to validation iff ``floor((i + 1) * fraction) > floor(i * fraction)`` (for 0.1:
    every 10th example), so the split is the same on every run and, for class-sorted folders, close to
    stratified. Returns (train_source, validation_source).
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"`val_split` must be in (0, 1); received val_split={fraction!r}")
    n = source.num_examples
    n_val = int(np.floor(n * fraction)) if n is not None else None
    if n_val == 0:
        raise DataError(f"val_split={fraction} of {n} examples leaves an empty validation set")
    f = tf.constant(fraction, tf.float64)

    def is_val(index, _):
        i = tf.cast(index, tf.float64)
        return tf.floor((i + 1) * f) > tf.floor(i * f)

    def drop_index(_, example):
        return example

    indexed = source.dataset.enumerate()
    parts = []
    for keep_val, count in ((False, None if n is None else n - n_val), (True, n_val)):
        if keep_val:
            dataset = indexed.filter(lambda i, e: is_val(i, e))
        else:
            dataset = indexed.filter(lambda i, e: tf.logical_not(is_val(i, e)))
        dataset = dataset.map(drop_index)
        part = dataclasses.replace(
            source,
            dataset=dataset,
            num_examples=count,
            description=f"{source.description} [{'validation' if keep_val else 'training'} {fraction:g} split]",
        )
        parts.append(part)
    return tuple(parts)


# --------------------------------------------------------------------------------------------------
# Pipeline


def resolve_image_size(source, image_size=None):
    """The (height, width) images are resized to: `image_size`, else the data's common image size.

    Raises DataError for mixed image sizes when no size is requested.
    """
    if image_size is not None:
        return tuple(int(v) for v in image_size)
    if source.mixed_sizes:
        raise DataError(f"{source.mixed_sizes}; pass --image-size H,W (or --input-shape) to resize them")
    shape = source.image_shape or source.first_image_shape
    if shape is None:
        raise DataError(f"the image size of {source.description} is unknown; pass --image-size H,W")
    return tuple(shape[:2])


def resize_and_crop(image, size):
    """Center-crop to the target aspect ratio, then resize (bilinear) to `size`; keeps uint8 images."""
    height, width = size
    shape = tf.shape(image)
    h, w = shape[0], shape[1]

    def crop_resize():
        # Largest crop with the target aspect ratio, centred.
        crop_h = tf.minimum(h, tf.cast(tf.round(tf.cast(w, tf.float32) * height / width), tf.int32))
        crop_w = tf.minimum(w, tf.cast(tf.round(tf.cast(h, tf.float32) * width / height), tf.int32))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        cropped = tf.image.crop_to_bounding_box(image, top, left, crop_h, crop_w)
        resized = tf.image.resize(cropped, size, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    same = tf.logical_and(tf.equal(h, height), tf.equal(w, width))
    out = tf.cond(same, lambda: image, crop_resize)
    out.set_shape([height, width, 3])
    return out


def _check_size(size, description):
    message = f"{description} has images of mixed sizes; pass --image-size H,W to resize them"

    def check(image, label):
        shape = tf.shape(image)[:2]
        with tf.control_dependencies([tf.debugging.assert_equal(shape, tf.constant(size), message=message)]):
            image = tf.identity(image)
        image.set_shape(list(size) + [3])
        return image, label

    return check


def build_augmenter(augment="basic", image_size=None, mixup=0.0, cutmix=0.0, seed=None):
    """A batched ``(images float32 [0,255], one-hot labels) -> same`` function from core Keras layers.

    augment: "none"; "basic" = RandomFlip("horizontal") + RandomTranslation(1/8, reflect);
    "randaugment" = basic + RandAugment(value_range=(0, 255)). mixup / cutmix: MixUp(alpha=mixup) and
    CutMix(factor=cutmix); when both are > 0 each batch gets one of them at random.
    """
    import keras

    if augment not in AUGMENTATIONS:
        raise ValueError(f"`augment` must be one of {AUGMENTATIONS}; received augment={augment!r}")
    image_layers = []
    if augment in ("basic", "randaugment"):
        image_layers += [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed),
        ]
    if augment == "randaugment":
        image_layers.append(keras.layers.RandAugment(value_range=(0, 255), seed=seed))
    mixers = []
    if mixup and mixup > 0:
        mixers.append(keras.layers.MixUp(alpha=mixup, seed=seed))
    if cutmix and cutmix > 0:
        mixers.append(keras.layers.CutMix(factor=cutmix, seed=seed))
    if not image_layers and not mixers:
        return None

    def apply(images, labels):
        for layer in image_layers:
            images = layer(images, training=True)
        if len(mixers) == 1:
            mixed = mixers[0]({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        elif len(mixers) == 2:

            def branch(layer):
                def run():
                    mixed = layer({"images": images, "labels": labels}, training=True)
                    return mixed["images"], mixed["labels"]

                return run

            images, labels = tf.cond(tf.random.uniform([]) < 0.5, branch(mixers[0]), branch(mixers[1]))
        return tf.clip_by_value(images, 0.0, 255.0), labels

    return apply


def make_pipeline(
    source,
    *,
    batch_size,
    image_size,
    num_classes,
    training=False,
    augment="none",
    mixup=0.0,
    cutmix=0.0,
    cache=True,
    shuffle_buffer=10000,
    seed=0,
    drop_remainder=False,
    resize=True,
):
    """Resize/crop (or, with resize=False, require every image to be `image_size`), cache, shuffle (training), batch, augment (training), one-hot, prefetch.

    Yields (float32 images [B, H, W, 3] in [0, 255], float32 one-hot labels [B, num_classes]).
    `cache`: True (memory), False, or a file path prefix for `Dataset.cache`.
    """
    if batch_size is None or int(batch_size) <= 0:
        raise ValueError(f"`batch_size` must be a positive integer; received batch_size={batch_size!r}")
    size = tuple(int(v) for v in image_size)
    dataset = source.dataset
    if source.image_shape is not None and tuple(source.image_shape[:2]) == size:
        pass  # every image already has the right size
    elif resize:
        dataset = dataset.map(lambda x, y: (resize_and_crop(x, size), y), num_parallel_calls=AUTOTUNE)
    else:  # sizes not known up front (TFRecord): check each image, fail clearly on a mismatch
        dataset = dataset.map(_check_size(size, source.description), num_parallel_calls=AUTOTUNE)
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if source.num_examples is not None:  # lets Keras size its progress bar and epochs
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(source.num_examples))
    if training:
        buffer = min(shuffle_buffer, source.num_examples or shuffle_buffer)
        dataset = dataset.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)

    def to_float(images, labels):
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)

    dataset = dataset.map(to_float, num_parallel_calls=AUTOTUNE)
    if training:
        augmenter = build_augmenter(augment, size, mixup=mixup, cutmix=cutmix, seed=seed)
        if augmenter is not None:
            dataset = dataset.map(augmenter, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def load(
    spec,
    *,
    batch_size=64,
    image_size=None,
    num_classes=None,
    val_split=0.0,
    val_data=None,
    split="train",
    data_dir=None,
    download=False,
    augment="basic",
    mixup=0.0,
    cutmix=0.0,
    cache=True,
    shuffle_buffer=10000,
    seed=0,
    tfds_builder=None,
):
    """Open `spec`, carve the validation split (or open `val_data`), and build both pipelines."""
    source = open_source(
        spec, split=split, data_dir=data_dir, num_classes=num_classes, download=download, tfds_builder=tfds_builder
    )
    size = resolve_image_size(source, image_size)
    if source.num_classes is None:
        raise DataError(f"the number of classes of {source.description} is unknown; pass --classes N")
    classes = source.num_classes
    if val_data:
        train_source = source
        val_source = open_source(
            val_data, split="test", data_dir=data_dir, num_classes=classes, download=download, tfds_builder=None
        )
    elif val_split:
        train_source, val_source = split_validation(source, val_split)
    else:
        train_source, val_source = source, None
    common = dict(
        batch_size=batch_size, image_size=size, num_classes=classes, cache=cache, seed=seed, resize=image_size is not None
    )
    train = make_pipeline(
        train_source,
        training=True,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        shuffle_buffer=shuffle_buffer,
        **common,
    )
    if val_data:
        common["resize"] = True  # a separate validation set is brought to the training image size
    validation = make_pipeline(val_source, **common) if val_source is not None else None
    return Data(
        train=train,
        validation=validation,
        num_train=train_source.num_examples,
        num_validation=val_source.num_examples if val_source is not None else 0,
        num_classes=classes,
        class_names=source.class_names,
        image_size=size,
        description=source.description,
        files=source.files,
    )


def take_images(spec_or_source, count, image_size, **open_kwargs):
    """The first `count` images of a data spec as float32 [count, H, W, 3] in [0, 255] (+ int labels)."""
    source = spec_or_source if isinstance(spec_or_source, DataSource) else open_source(spec_or_source, **open_kwargs)
    dataset = source.dataset.take(count).map(lambda x, y: (resize_and_crop(x, tuple(image_size)), y))
    images, labels = [], []
    for image, label in dataset:
        images.append(image.numpy())
        labels.append(int(label))
    if not images:
        raise DataError(f"{source.description} has no examples")
    return np.stack(images).astype("float32"), np.asarray(labels, "int32")
