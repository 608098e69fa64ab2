"""Knowledge distillation from a frozen teacher (`--distill-from`, `--distill-weight`).

The teacher runs inside the training tf.data pipeline, after batching and augmentation, so it scores
exactly the images the student sees; each target becomes (1 - A) * y + A * p_teacher. Nothing wraps
the student: its checkpoints, presets and resume state are the same as without distillation. The
validation pipeline keeps its hard labels, so validation accuracy compares with non-distilled runs.
"""

import os

import tensorflow as tf

from keras_effconv.training.models import build_model
from keras_effconv.training.models import load_model
from keras_effconv.training.models import model_names
from keras_effconv.training.models import outputs_are_probabilities

SPEC_HELP = "MODEL:PRESET (e.g. ResNet20:cifar10) or a .keras file"


def _is_file_spec(spec):
    return spec.endswith(".keras") or os.path.exists(spec) or os.sep in spec.split(":", 1)[0]


def check_spec(spec, weight):
    """ValueError naming --distill-from / --distill-weight for a spec or weight that cannot work (no model built)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 < weight <= 1.0:
        raise ValueError(f"`distill_weight` (--distill-weight) must be a number > 0 and <= 1; "
                         f"received distill_weight={weight!r}")
    if spec is None:
        return
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`distill_from` (--distill-from) must be {SPEC_HELP}; received distill_from={spec!r}")
    if _is_file_spec(spec):
        if not os.path.isfile(spec):
            raise ValueError(f"--distill-from: teacher model file not found: {spec!r} (expected {SPEC_HELP})")
        return
    name, _, preset = spec.partition(":")
    if not preset or name not in model_names():
        raise ValueError(f"--distill-from must be {SPEC_HELP} with a registered MODEL; received {spec!r}"
                         + ("" if not preset else f" (unknown model {name!r})"))


def load_teacher(spec, input_shape, num_classes):
    """The frozen teacher of `spec`, checked against the training data's input shape and class count."""
    if _is_file_spec(spec):
        try:
            teacher = load_model(spec)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"--distill-from {spec!r}: {error}") from None
    else:
        name, _, preset = spec.partition(":")
        try:
            teacher = build_model(name, input_shape, num_classes, weights=preset)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"--distill-from {spec!r}: cannot build the teacher: {error}") from None
    got_shape = tuple(teacher.input_shape[1:])
    if got_shape != tuple(input_shape):
        raise ValueError(f"--distill-from {spec!r}: the teacher takes input shape {got_shape}, "
                         f"the training data is {tuple(input_shape)}")
    classes = teacher.output_shape[-1]
    if classes != num_classes:
        raise ValueError(f"--distill-from {spec!r}: the teacher predicts {classes} classes, "
                         f"the training data has {num_classes}")
    teacher.trainable = False
    return teacher


def distill_targets(teacher, weight, from_logits=None):
    """(x, y) -> (x, (1 - weight) * y + weight * softmax-probabilities of teacher(x, training=False)).

    `y` is one-hot (or mixed by MixUp/CutMix) float [B, K]; sparse integer labels [B] are one-hot
    encoded first. `from_logits=None` asks `outputs_are_probabilities` whether the teacher needs a softmax.
    """
    if from_logits is None:
        from_logits = not outputs_are_probabilities(teacher)
    num_classes = int(teacher.output_shape[-1])

    def mix(images, labels):
        if labels.shape.rank == 1:
            labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
        labels = tf.cast(labels, tf.float32)
        scores = tf.cast(teacher(images, training=False), tf.float32)
        probabilities = tf.nn.softmax(scores, axis=-1) if from_logits else scores
        return images, (1.0 - weight) * labels + weight * tf.stop_gradient(probabilities)

    return mix


def distill_dataset(dataset, teacher, weight):
    """`dataset` (batched (images, labels)) with the teacher's soft targets mixed into the labels."""
    return dataset.map(distill_targets(teacher, float(weight)), num_parallel_calls=1).prefetch(tf.data.AUTOTUNE)


def describe(spec, weight):
    return f"distilled from {spec} (weight {weight:g})"
