"""The tf.data pipeline: validation split, resizing, augmentation, batching (see `keras_effconv.data`)."""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from keras_effconv.data.base import AUGMENTATIONS
from keras_effconv.data.base import AUTOTUNE
from keras_effconv.data.base import Data
from keras_effconv.data.base import DataError
from keras_effconv.data.base import DataSource
from keras_effconv.data.sources import open_source

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
        raise DataError(f"{source.mixed_sizes}; pass --image-size H,W to resize them")
    shape = source.image_shape or source.first_image_shape
    if shape is None:
        raise DataError(f"the image size of {source.description} is unknown; pass --image-size H,W")
    return tuple(shape[:2])


def random_resized_crop(image, size, area=(0.25, 1.0), aspect_ratio=(3 / 4, 4 / 3)):
    """Inception-style augmentation: a random crop covering `area` of the image at a random aspect
    ratio, resized (bilinear) to `size`. Few-epoch budgets prefer a milder minimum area than 0.08."""
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4], tf.float32), min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio, area_range=area, max_attempts=10, use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    resized = tf.image.resize(crop, size, method="bilinear", antialias=True)
    out = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    out.set_shape([*size, 3])
    return out


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


def _offset(seed, i):
    """A distinct seed per augmentation layer: one shared seed would tie their random draws."""
    return None if seed is None else seed + i


def build_augmenter(augment="basic", image_size=None, mixup=0.0, cutmix=0.0, seed=None):
    """A batched ``(images float32 [0,255], one-hot labels) -> same`` function from core Keras layers.

    augment: "none"; "basic" = RandomFlip("horizontal") + RandomTranslation(1/8, reflect);
    "crop" = RandomFlip + integer shifts of up to 1/8 of the size with zero fill (= zero-pad + random
    crop, the CIFAR standard: 4 px at 32x32); "randaugment" = basic + RandAugment(value_range=(0, 255));
    "inception" = RandomFlip here, after the per-image random-resized crop of `make_pipeline`.
    mixup / cutmix: MixUp(alpha=mixup) and CutMix(factor=cutmix); when both are > 0 each batch gets one
    of them at random.
    """
    import keras

    if augment not in AUGMENTATIONS:
        raise ValueError(f"`augment` must be one of {AUGMENTATIONS}; received augment={augment!r}")
    image_layers = []
    if augment in ("basic", "randaugment"):
        image_layers += [
            keras.layers.RandomFlip("horizontal", seed=_offset(seed, 0)),
            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=_offset(seed, 1)),
        ]
    elif augment == "crop":
        image_layers += [
            keras.layers.RandomFlip("horizontal", seed=_offset(seed, 0)),
            # Whole-pixel shifts (nearest) with zero fill: zero-padding + a random crop, per image.
            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", fill_value=0.0,
                                           interpolation="nearest", seed=_offset(seed, 1)),
        ]
    elif augment == "inception":
        image_layers.append(keras.layers.RandomFlip("horizontal", seed=_offset(seed, 0)))
    if augment == "randaugment":
        image_layers.append(keras.layers.RandAugment(value_range=(0, 255), seed=_offset(seed, 2)))
    mixers = []
    if mixup and mixup > 0:
        mixers.append(keras.layers.MixUp(alpha=mixup, seed=_offset(seed, 3)))
    if cutmix and cutmix > 0:
        mixers.append(keras.layers.CutMix(factor=cutmix, seed=_offset(seed, 4)))
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
    elif training and augment == "inception":
        pass  # cached at the source size; the random-resized crop below makes `size`
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
        if augment == "inception":
            dataset = dataset.map(lambda x, y: (random_resized_crop(x, size), y), num_parallel_calls=AUTOTUNE)
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
    on_bad_image="error",
):
    """Open `spec`, carve the validation split (or open `val_data`), and build both pipelines."""
    source = open_source(
        spec, split=split, data_dir=data_dir, num_classes=num_classes, download=download, tfds_builder=tfds_builder,
        on_bad_image=on_bad_image,
    )
    size = resolve_image_size(source, image_size)
    if source.num_classes is None:
        raise DataError(f"the number of classes of {source.description} is unknown; pass --classes N")
    classes = source.num_classes
    if val_data:
        train_source = source
        val_source = open_source(
            val_data, split="test", data_dir=data_dir, num_classes=classes, download=download, tfds_builder=None,
            on_bad_image=on_bad_image,
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
    # A seed apart from the training pipeline's (seed .. seed + 4: shuffle and augmentation layers).
    calibration = functools.partial(
        make_pipeline, train_source, training=True, augment=augment, mixup=mixup, cutmix=cutmix,
        shuffle_buffer=shuffle_buffer, **{**common, "cache": False, "seed": _offset(seed, 100)},
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
        skipped=source.skipped + (val_source.skipped if val_data else []),
        make_calibration=calibration,
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
