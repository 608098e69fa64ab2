"""Test-time augmentation: score an image by the mean prediction over a few views of it.

`flip` averages an image and its mirror image. `flip-translate` (airbench's choice for CIFAR) adds the
image shifted by one pixel diagonally each way, reflect-padded, each with its mirror too: the untranslated
pair weighs 1/2 and each shifted pair 1/4, because a shift loses a row and a column of real pixels.
"""

from keras_effconv import data as data_lib

VIEWS = ("none", "flip", "flip-translate")


def check_views(views):
    if views not in VIEWS:
        raise ValueError(f"`tta` must be one of {', '.join(VIEWS)}; received tta={views!r}")


def score_key(views):
    """The run.json `best` entry of the accuracy with these views: val_accuracy_flip, val_accuracy_flip_translate."""
    return "val_accuracy_" + views.replace("-", "_")


def _shifted(images, dy, dx):
    """`images` moved by (dy, dx) pixels (|dy|, |dx| <= 1), the border filled by reflection."""
    import tensorflow as tf

    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return padded[:, 1 - dy:1 - dy + height, 1 - dx:1 - dx + width, :]


def tta_predict(model, images, views="flip"):
    """The weighted mean of `model`'s outputs over the `views` of `images` (NHWC)."""
    import tensorflow as tf

    check_views(views)

    def pair(x):
        out = model(x, training=False)
        return out if views == "none" else (out + model(tf.reverse(x, axis=[2]), training=False)) / 2

    scores = pair(images)
    if views == "flip-translate":
        scores = scores / 2 + (pair(_shifted(images, 1, 1)) + pair(_shifted(images, -1, -1))) / 4
    return scores


def evaluate_tta(model, dataset, views="flip", files=()):
    """Top-1 accuracy on (images, one-hot labels) batches when each image is scored by `tta_predict`."""
    import tensorflow as tf

    check_views(views)
    predict = tf.function(lambda images: tta_predict(model, images, views))
    correct = total = 0
    with data_lib.data_errors(files):
        for images, labels in dataset:
            scores = predict(images)
            correct += int(tf.reduce_sum(tf.cast(tf.argmax(scores, -1) == tf.argmax(labels, -1), tf.int32)))
            total += int(images.shape[0])
    return correct / max(total, 1)
