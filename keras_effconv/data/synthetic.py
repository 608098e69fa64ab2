"""Generated, deterministic data (`synthetic[:N[:SEED]]`): the demo and the tests work offline."""

import numpy as np
import tensorflow as tf

from keras_effconv.data.base import SYNTHETIC_CLASSES
from keras_effconv.data.base import DataError
from keras_effconv.data.base import DataSource


def synthetic_source(spec):
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
