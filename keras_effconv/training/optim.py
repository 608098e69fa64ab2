"""Distribution strategy, learning-rate schedule and optimizer for `train`."""

import keras
import tensorflow as tf

from keras_effconv.training import cluster

STRATEGIES = ("default", "mirrored", "multiworker", "multi-worker")
OPTIMIZERS = ("sgd", "adamw")


def configure_virtual_devices(count):
    """Split the first CPU into `count` logical devices (to run MirroredStrategy on one CPU).

    Must run before TensorFlow initialises its devices (before the first op).
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(count))


def make_strategy(name="default", timeout_seconds=None):
    """The `tf.distribute` strategy called `name`; "default" becomes "multiworker" when TF_CONFIG is set.

    "multiworker" (or "multi-worker"): MultiWorkerMirroredStrategy from TF_CONFIG (checked first,
    one-line errors), trained by the custom loop of `keras_effconv.training.distributed`;
    `timeout_seconds` bounds its collectives.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={name!r}")
    name = cluster.strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices=devices)
    return cluster.make_multiworker_strategy(timeout_seconds)


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


def make_optimizer(name, schedule, weight_decay=0.0, momentum=0.9, depthwise_decay=False, ema=0.0):
    """SGD (Nesterov momentum) or AdamW; decoupled weight decay, not applied to biases and BN/LN scales,
    nor (unless `depthwise_decay`) to depthwise kernels: 9 weights per channel need no decay, and
    decaying them cost EffResNet20 ~1 point of CIFAR-10 accuracy (recipes/cifar10/README.md).
    `ema` > 0: the optimizer also keeps a moving average of the weights with that momentum (`use_ema`)."""
    weight_decay = float(weight_decay) or None
    averaging = {"use_ema": True, "ema_momentum": float(ema)} if ema else {}
    if name == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=weight_decay,
                                         **averaging)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.0, **averaging)
    else:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; received optimizer={name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(
            var_names=["bias", "gamma", "beta"] + ([] if depthwise_decay else ["depthwise_kernel"])
        )
    return optimizer
