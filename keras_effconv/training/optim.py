"""Distribution strategy, learning-rate schedule and optimizer for `train`."""

import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker")
OPTIMIZERS = ("sgd", "adamw")


def configure_virtual_devices(count):
    """Split the first CPU into `count` logical devices (to run MirroredStrategy on one CPU).

    Must run before TensorFlow initialises its devices (before the first op).
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(count))


def make_strategy(name="default"):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        # Reads the cluster from the TF_CONFIG environment variable (a single local worker without it).
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        tasks = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
        if tasks > 1:
            # Keras 3 `fit` fails under MultiWorkerMirroredStrategy with several workers ("Attempt to
            # convert a value (PerReplica...)"): keras-team/keras#20585, tensorflow/tensorflow#72388.
            raise ValueError(
                f"--strategy multi-worker with {tasks} workers (TF_CONFIG) is not supported: Keras 3 "
                "model.fit cannot train under MultiWorkerMirroredStrategy across workers "
                "(keras-team/keras#20585). Use --strategy mirrored on one machine"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={name!r}")


def make_schedule(learning_rate, total_steps, warmup_steps=0):
    """Linear warmup from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 0."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = int(min(max(warmup_steps, 0), total_steps - 1))
    if warmup_steps > 0:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=total_steps - warmup_steps,
            warmup_target=float(learning_rate),
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(float(learning_rate), decay_steps=total_steps)


def make_optimizer(name, schedule, weight_decay=0.0, momentum=0.9, depthwise_decay=False):
    """SGD (Nesterov momentum) or AdamW; decoupled weight decay, not applied to biases and BN/LN scales,
    nor (unless `depthwise_decay`) to depthwise kernels: 9 weights per channel need no decay, and
    decaying them cost EffResNet20 ~1 point of CIFAR-10 accuracy (recipes/cifar10/README.md)."""
    weight_decay = float(weight_decay) or None
    if name == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.0)
    else:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; received optimizer={name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(
            var_names=["bias", "gamma", "beta"] + ([] if depthwise_decay else ["depthwise_kernel"])
        )
    return optimizer
