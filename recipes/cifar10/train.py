"""CIFAR-10 recipe for the CIFAR ResNets (ResNet20/32/56) and their Eff twins (EffResNet20/32/56).

    python recipes/cifar10/train.py --model EffResNet20 --epochs 15 --output runs/eff20

Data: a TFRecord folder/glob of CIFAR-10 training images (``image`` JPEG/PNG bytes, ``label`` int64),
by default ``/work/shared/data/cifar10-train`` (the 50,000 training images). A deterministic 10 %
validation split (5,000 images: every 10th record, `keras_effconv.data.split_validation`) is carved
out of it; the rest (45,000) is the training set. The CIFAR-10 test split is never touched here.

Recipe (He et al. 2016 CIFAR setup, shortened to an epoch budget):
- augmentation: pad-4 random crop + horizontal flip, per example, with core Keras layers
  (`RandomTranslation(4/32, interpolation="nearest", fill_mode="constant")`, i.e. integer shifts in
  [-4, 4] with zero fill, = zero-pad 4 + random 32x32 crop; `RandomFlip("horizontal")`). We do not
  use `keras.layers.RandomCrop` on batches: Keras 3 draws ONE crop offset per batch, not per image;
  nor the "basic" augmentation of `keras_effconv.data` (bilinear sub-pixel shifts, reflect fill).
- SGD, Nesterov momentum 0.9, lr 0.1 at batch 128, linear warmup (1 epoch) + cosine decay to 0 over
  the epoch budget (`keras_effconv.training.make_schedule`), decoupled weight decay 5e-4 on conv and
  dense kernels (not biases / BN; optionally not depthwise kernels), label smoothing 0.1.
  `--optimizer adamw` switches to AdamW (lr 1e-3 / weight decay 0.05 are sensible starts).

Reuses `keras_effconv.data` (TFRecord reading, validation split, cached/batched pipeline),
`keras_effconv.training` (model + pixel rescaling, schedule, optimizer, atomic checkpoints) and
`keras_effconv.analysis.count_macs`. Writes to --output: best.keras, last.keras, log.csv,
result.json (model, MACs, params, seconds per epoch, validation accuracy per epoch, config); with
--results FILE the result is also merged into FILE (a JSON object keyed by --run-name).
"""

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

DEFAULT_DATA = "/work/shared/data/cifar10-train"
IMAGE_SIZE = (32, 32)
NUM_CLASSES = 10


@dataclasses.dataclass
class RecipeConfig:
    model: str = "EffResNet20"
    data: str = DEFAULT_DATA
    output: str = "runs/cifar10"
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    depthwise_decay: bool = True  # False: no weight decay on depthwise kernels either
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    val_split: float = 0.1
    pad: int = 4
    flip: bool = True
    steps_per_epoch: int = None  # cap (smoke tests); default: one pass over the 45k training images
    shuffle_buffer: int = 50000
    seed: int = 0
    verbose: object = 2
    run_name: str = None
    results: str = None  # JSON file to merge this run's result into


# --------------------------------------------------------------------------------------------------
# Data


def make_augmenter(pad=4, flip=True, image_size=IMAGE_SIZE, seed=None):
    """Batched ``(images float32 [B, H, W, 3], labels) -> same``: pad-`pad` random crop (+ h-flip).

    Per-example integer shifts in [-pad, pad] with zero fill (nearest interpolation, so no blur),
    which is zero-padding by `pad` followed by a random HxW crop. Core Keras layers only.
    """
    import keras

    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if pad:
        layers.append(
            keras.layers.RandomTranslation(
                pad / image_size[0], pad / image_size[1], fill_mode="constant", fill_value=0.0,
                interpolation="nearest", seed=None if seed is None else seed + 1,
            )
        )

    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return apply


def make_data(config):
    """(train, validation, num_train, num_validation, files): batched pipelines from keras_effconv.data."""
    import tensorflow as tf

    from keras_effconv import data as data_lib

    source = data_lib.open_source(config.data, num_classes=NUM_CLASSES)
    size = data_lib.resolve_image_size(source, IMAGE_SIZE)
    train_source, val_source = data_lib.split_validation(source, config.val_split)
    common = dict(batch_size=config.batch_size, image_size=size, num_classes=NUM_CLASSES, cache=True, seed=config.seed,
                  resize=True)
    train = data_lib.make_pipeline(train_source, training=True, augment="none", shuffle_buffer=config.shuffle_buffer,
                                   **common)
    augment = make_augmenter(config.pad, config.flip, size, seed=config.seed)
    train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    validation = data_lib.make_pipeline(val_source, training=False, **common)
    return train, validation, train_source.num_examples, val_source.num_examples, source.files


# --------------------------------------------------------------------------------------------------
# Model and optimizer


def model_cost(name):
    """(MACs per image, params) of the registered model (without the pixel-rescaling wrapper)."""
    from keras_effconv.analysis import count_macs
    from keras_effconv.applications import get_model

    model = get_model(name, weights=None, classes=NUM_CLASSES, input_shape=IMAGE_SIZE + (3,))
    return int(count_macs(model)), int(model.count_params())


def make_optimizer(config, total_steps, steps_per_epoch):
    from keras_effconv import training

    schedule = training.make_schedule(config.lr, total_steps, round(config.warmup_epochs * steps_per_epoch))
    optimizer = training.make_optimizer(config.optimizer, schedule, config.weight_decay, config.momentum)
    if config.weight_decay and not config.depthwise_decay:
        optimizer.exclude_from_weight_decay(var_names=["depthwise_kernel"])
    return optimizer


class EpochTimer:
    """Keras callback factory: wall seconds per epoch (training part, and with validation)."""

    @staticmethod
    def make():
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.train_seconds, self.epoch_seconds = [], []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()
                self._train_end = None

            def on_test_begin(self, logs=None):
                if self._train_end is None:
                    self._train_end = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                end = time.perf_counter()
                self.train_seconds.append((self._train_end or end) - self._start)
                self.epoch_seconds.append(end - self._start)

        return _Timer()


# --------------------------------------------------------------------------------------------------
# Run


def merge_result(path, key, result):
    """Add `result` under `key` to the JSON object in `path` (created if missing), atomically."""
    import fcntl

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        payload = {}
        if os.path.exists(path):
            with open(path) as f:
                payload = json.load(f)
        payload.setdefault("runs", {})[key] = result
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + ".lock")


def run(config, log=print):
    """Train `config.model` with the recipe; returns the result dict (also written to OUTPUT/result.json)."""
    import keras
    import numpy as np

    from keras_effconv import data as data_lib
    from keras_effconv import training

    if config.epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; received epochs={config.epochs!r}")
    os.makedirs(config.output, exist_ok=True)
    train_ds, val_ds, num_train, num_val, files = make_data(config)
    steps_per_epoch = -(-num_train // config.batch_size)
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(config.steps_per_epoch))
        train_ds = train_ds.take(steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs

    macs, params = model_cost(config.model)
    keras.utils.set_random_seed(config.seed)
    model = training.build_model(config.model, IMAGE_SIZE + (3,), NUM_CLASSES)  # takes raw [0, 255] pixels
    from_logits = not training.outputs_are_probabilities(model)
    model.compile(
        optimizer=make_optimizer(config, total_steps, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    timer = EpochTimer.make()
    checkpoint = training.AtomicCheckpoint(config.output, monitor="val_accuracy", mode="max")
    log(f"{config.model}: {macs:,} MACs, {params:,} params; {num_train} train / {num_val} validation images; "
        f"{config.epochs} epochs x {steps_per_epoch} steps, batch {config.batch_size}, {config.optimizer} "
        f"lr {config.lr:g}, wd {config.weight_decay:g}{'' if config.depthwise_decay else ' (not depthwise)'}, "
        f"label smoothing {config.label_smoothing:g}")
    start = time.perf_counter()
    with data_lib.data_errors(files):
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=config.epochs, verbose=config.verbose, shuffle=False,
            callbacks=[timer, checkpoint, keras.callbacks.CSVLogger(os.path.join(config.output, "log.csv"))],
        )
    wall = time.perf_counter() - start
    hist = {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items() if k != "learning_rate"}
    result = {
        "model": config.model,
        "macs": macs,
        "macs_counter": "keras_effconv.analysis.count_macs",
        "params": params,
        "epochs": config.epochs,
        "steps_per_epoch": steps_per_epoch,
        "num_train": num_train,
        "num_validation": num_val,
        "val_accuracy_last": hist["val_accuracy"][-1],
        "val_accuracy_best": max(hist["val_accuracy"]),
        "best_epoch": int(np.argmax(hist["val_accuracy"])) + 1,
        "seconds_per_epoch_train_median": round(float(np.median(timer.train_seconds)), 1),
        "seconds_per_epoch_median": round(float(np.median(timer.epoch_seconds)), 1),
        "seconds_per_epoch": [round(s, 1) for s in timer.epoch_seconds],
        "wall_seconds": round(wall, 1),
        "history": hist,
        "config": dataclasses.asdict(config),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(config.output, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    if config.results:
        merge_result(config.results, config.run_name or f"{config.model}-{config.epochs}ep", result)
    log(f"{config.model}: val_accuracy {result['val_accuracy_last']:.4f} after {config.epochs} epochs "
        f"(best {result['val_accuracy_best']:.4f} @ {result['best_epoch']}); "
        f"{result['seconds_per_epoch_median']:.0f} s/epoch")
    return result


def parse_args(argv=None):
    d = RecipeConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=d.model, help="ResNet20/32/56 or EffResNet20/32/56 (default: %(default)s)")
    p.add_argument("--data", default=d.data, help="TFRecord folder/glob of CIFAR-10 training images (default: %(default)s)")
    p.add_argument("--output", default=d.output, help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--no-depthwise-decay", dest="depthwise_decay", action="store_false",
                   help="no weight decay on depthwise kernels")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--val-split", type=float, default=d.val_split)
    p.add_argument("--pad", type=int, default=d.pad, help="random-crop padding in pixels (0: no crop)")
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps per epoch (smoke tests)")
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--verbose", type=int, default=d.verbose)
    p.add_argument("--run-name", help="key of this run in --results (default: MODEL-EPOCHSep)")
    p.add_argument("--results", help="merge the result into this JSON file (e.g. recipes/cifar10/results.json)")
    return RecipeConfig(**vars(p.parse_args(argv)))


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
