"""Image-folder sources: ``PATH/<class name>/<image>``, every image decoded once up front.

The up-front pass (parallel, in tf.data) finds the image sizes (for the mixed-sizes check) and the
undecodable files, which are rejected or skipped by the `on_bad_image` policy before training
starts, so no epoch stops on a bad file.
"""

import os

import numpy as np
import tensorflow as tf

from keras_effconv.data.base import AUTOTUNE
from keras_effconv.data.base import IMAGE_EXTENSIONS
from keras_effconv.data.base import DataError
from keras_effconv.data.base import DataSource
from keras_effconv.data.base import apply_bad_image_policy
from keras_effconv.data.base import decodable
from keras_effconv.data.base import decode


def _list_images(folder):
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
    return class_names, paths, labels


def folder_source(folder, on_bad_image="error"):
    """A `DataSource` over the decodable images of `folder` (see the module docstring)."""
    class_names, paths, labels = _list_images(folder)
    good = decodable(paths, tf.io.read_file)
    skipped = apply_bad_image_policy([p for i, p in enumerate(paths) if i not in good], on_bad_image, repr(folder))
    if not good:
        raise DataError(f"no decodable images under {folder!r} ({len(paths)} files, all undecodable)")
    keep = sorted(good)
    sizes = {}
    for i in keep:
        sizes.setdefault(good[i], paths[i])
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
        return decode(tf.io.read_file(path)), label

    dataset = tf.data.Dataset.from_tensor_slices(([paths[i] for i in keep], np.asarray(labels, "int32")[keep]))
    dataset = dataset.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
    return DataSource(
        dataset=dataset,
        description=f"image folder {folder}",
        num_examples=len(keep),
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=image_shape,
        mixed_sizes=mixed,
        skipped=skipped,
    )
