"""Training and evaluation loop behind `effconv train` / `effconv evaluate` / `effconv demo`.

`train(TrainConfig(...))` builds a registered model (plus a pixel-rescaling input layer, so saved
models take raw RGB pixels in [0, 255]), compiles it under a `tf.distribute` strategy with SGD or
AdamW and a warmup + cosine learning-rate schedule, and fits it with:

- atomic checkpoints ``best.keras`` / ``last.keras`` (saved to a temporary name, then `os.replace`),
- ``keras.callbacks.BackupAndRestore`` in ``OUTPUT/backup``: a killed run started again with the same
  command resumes at the first unfinished epoch (weights, optimizer state and LR schedule step),
- ``log.csv`` (`CSVLogger`, appended across resumes) and TensorBoard event files in ``OUTPUT/tensorboard``
  (the Keras TensorBoard callback when the `tensorboard` package is installed, else scalar summaries
  written with TF core ops that TensorBoard reads the same way),
- ``run.json``: the configuration, class names, input shape and final metrics.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import data as data_lib
from keras_effconv.applications import registry

STRATEGIES = ("default", "mirrored", "multi-worker")
OPTIMIZERS = ("sgd", "adamw")
# Models that normalise pixels themselves (keras.applications.EfficientNet* include a Rescaling).
_RAW_PIXEL_MODELS = ("EfficientNet",)


# --------------------------------------------------------------------------------------------------
# Models


def demo_cnn(input_shape=(32, 32, 3), classes=10, weights=None, **kwargs):
    """A small plain CNN (~0.1 M params) used by `effconv demo` when no "EffResNet20" is registered."""
    if weights is not None:
        raise ValueError(f"DemoCNN has no pretrained weights; received weights={weights!r}")
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        for j in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{i}_{j}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="DemoCNN")


LOCAL_MODELS = {"DemoCNN": demo_cnn}


def model_names():
    """Registered model names plus the models defined here (DemoCNN)."""
    return sorted(set(registry.available_models()) | set(LOCAL_MODELS))


def default_demo_model():
    return "EffResNet20" if "EffResNet20" in registry.available_models() else "DemoCNN"


def build_model(name, input_shape, num_classes, rescale="auto"):
    """`get_model(name, weights=None, input_shape=..., classes=...)` behind a pixel-rescaling layer.

    rescale: "auto" (to [-1, 1], except for models that rescale themselves), "symmetric" ([-1, 1]),
    "unit" ([0, 1]) or "none". The returned model takes float RGB pixels in [0, 255].
    """
    input_shape = tuple(int(v) for v in input_shape)
    kwargs = dict(weights=None, input_shape=input_shape, classes=int(num_classes))
    if name in LOCAL_MODELS and name not in registry.available_models():
        base = LOCAL_MODELS[name](**kwargs)
    elif name in registry.available_models():
        base = registry.get_model(name, **kwargs)
    else:
        raise ValueError(f"Unknown model name={name!r}; available: {', '.join(model_names())}")
    if rescale == "auto":
        rescale = "none" if name.startswith(_RAW_PIXEL_MODELS) else "symmetric"
    inputs = keras.Input(input_shape, name="pixels")
    if rescale == "symmetric":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    elif rescale == "unit":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    elif rescale == "none":
        x = inputs
    else:
        raise ValueError(f"`rescale` must be auto, symmetric, unit or none; received rescale={rescale!r}")
    return keras.Model(inputs, base(x), name=name)


def outputs_are_probabilities(model):
    """True if the model ends in a softmax (rows of a random batch are non-negative and sum to 1)."""
    x = np.random.default_rng(0).uniform(0, 255, (2,) + tuple(model.input_shape[1:])).astype("float32")
    y = np.asarray(model(x, training=False))
    return bool(np.all(y >= 0) and np.allclose(y.sum(-1), 1.0, atol=1e-3))


def load_model(path):
    """Load a `.keras` file (registering this package's custom layers first), uncompiled."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path!r}")
    for module in ("keras_effconv.layers", "keras_effconv.applications"):
        with contextlib.suppress(ImportError):
            __import__(module)
    return keras.saving.load_model(path, compile=False)


def compile_for_eval(model, label_smoothing=0.0):
    from_logits = not outputs_are_probabilities(model)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    return model


# --------------------------------------------------------------------------------------------------
# Strategy, optimizer, schedule


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


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


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


def make_optimizer(name, schedule, weight_decay=0.0, momentum=0.9):
    """SGD (Nesterov momentum) or AdamW; decoupled weight decay, not applied to biases and BN/LN scales."""
    weight_decay = float(weight_decay) or None
    if name == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.0)
    else:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; received optimizer={name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


# --------------------------------------------------------------------------------------------------
# Callbacks


def save_atomic(model, path):
    """`model.save(path)` through a temporary file in the same folder and `os.replace`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.keras", dir=folder)
    os.close(fd)
    try:
        model.save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json_atomic(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras`` every epoch and ``best.keras`` on improvement of `monitor`, atomically.

    The best value is kept in ``best.json`` so a resumed run does not overwrite a better model.
    """

    def __init__(self, directory, monitor="val_accuracy", mode="max"):
        super().__init__()
        self.directory = directory
        self.monitor, self.mode = monitor, mode
        self.best_path = os.path.join(directory, "best.keras")
        self.last_path = os.path.join(directory, "last.keras")
        self.state_path = os.path.join(directory, "best.json")
        self.best, self.best_epoch = None, None

    def on_train_begin(self, logs=None):
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            if state.get("monitor") == self.monitor:
                self.best, self.best_epoch = state["value"], state["epoch"]

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_atomic(self.model, self.last_path)
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and self._improved(float(value)):
            self.best, self.best_epoch = float(value), int(epoch)
            save_atomic(self.model, self.best_path)
            _write_json_atomic(self.state_path, {"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch})


class ScalarSummaries(keras.callbacks.Callback):
    """Per-epoch TensorBoard scalars (``train``/``validation`` runs, ``epoch_<metric>`` tags, like the
    Keras TensorBoard callback), written with TF core summary ops: works without the tensorboard package.
    """

    def __init__(self, log_dir):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(run).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=self._metadata)
        lr = self.model.optimizer.learning_rate
        with self._writer("train").as_default():
            tf.summary.write("epoch_learning_rate", tf.constant(float(np.asarray(lr))), step=epoch, metadata=self._metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()


def tensorboard_callback(log_dir):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ScalarSummaries(log_dir)
    return keras.callbacks.TensorBoard(log_dir)


# --------------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class TrainConfig:
    model: str = "DemoCNN"
    data: str = "synthetic"
    output: str = "effconv-run"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = None  # default: 0.1 * batch/256 for SGD, 1e-3 for AdamW
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: str = "basic"
    mixup: float = 0.0
    cutmix: float = 0.0
    val_split: float = 0.1
    val_data: str = None
    image_size: tuple = None  # (H, W); default: the data's image size
    classes: int = None  # default: the data's number of classes
    rescale: str = "auto"
    strategy: str = "default"
    split: str = "train"
    data_dir: str = None
    download: bool = False
    cache: bool = True
    shuffle_buffer: int = 10000
    steps_per_epoch: int = None  # cap (for quick runs); default: one pass over the training data
    seed: int = 0
    jit_compile: bool = False
    verbose: object = "auto"
    overwrite: bool = False

    def default_lr(self):
        return 1e-3 if self.optimizer == "adamw" else 0.1 * self.batch_size / 256


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    output: str
    best_path: str
    last_path: str
    best_epoch: int
    metrics: dict  # final-epoch metrics (loss, accuracy, val_loss, val_accuracy)
    initial_epoch: int  # > 0 when the run resumed from a backup
    num_train: int
    num_validation: int
    class_names: list
    input_shape: tuple


def backup_epoch(output):
    """The epoch a run in `output` would resume at (0 when there is no backup)."""
    path = os.path.join(output, "backup", "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


def _prepare_output(config):
    output = config.output
    resume = backup_epoch(output) if os.path.isdir(output) else 0
    finished = os.path.exists(os.path.join(output, "last.keras")) and not os.path.isdir(os.path.join(output, "backup"))
    if finished and not config.overwrite:
        raise ValueError(
            f"output folder {output!r} already holds a finished run (last.keras); "
            "pass --overwrite to replace it or choose another --output"
        )
    if finished or (config.overwrite and not resume):
        for name in ("best.keras", "last.keras", "best.json", "log.csv", "run.json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(output, name))
        shutil.rmtree(os.path.join(output, "tensorboard"), ignore_errors=True)
        shutil.rmtree(os.path.join(output, "backup"), ignore_errors=True)
    os.makedirs(output, exist_ok=True)
    return resume


def train(config, strategy=None, callbacks=(), log=print):
    """Train `config.model` on `config.data`; returns a `TrainResult`. Resumes from OUTPUT/backup."""
    if config.model not in model_names():
        raise ValueError(f"Unknown model name={config.model!r}; available: {', '.join(model_names())}")
    for name, value, allowed in (
        ("optimizer", config.optimizer, OPTIMIZERS),
        ("strategy", config.strategy, STRATEGIES),
        ("augment", config.augment, data_lib.AUGMENTATIONS),
    ):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed}; received {name}={value!r}")
    if config.epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; received epochs={config.epochs!r}")
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    tmp_output = None
    backup_dir = os.path.join(config.output, "backup")
    if not chief:
        # Non-chief workers of a multi-worker run write checkpoints and logs to a scratch folder, but
        # keep their own backup next to the chief's so that every worker resumes at the same epoch.
        backup_dir = os.path.join(backup_dir, f"worker-{strategy.cluster_resolver.task_id}")
        tmp_output = tempfile.mkdtemp(prefix="effconv-worker-")
        config = dataclasses.replace(config, output=tmp_output)
    data = data_lib.load(
        config.data,
        batch_size=config.batch_size,
        image_size=config.image_size,
        num_classes=config.classes,
        val_split=0.0 if config.val_data else config.val_split,
        val_data=config.val_data,
        split=config.split,
        data_dir=config.data_dir,
        download=config.download,
        augment=config.augment,
        mixup=config.mixup,
        cutmix=config.cutmix,
        cache=config.cache,
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
    )
    created = not os.path.exists(config.output)
    initial_epoch = _prepare_output(config)
    try:
        return _fit(config, strategy, data, initial_epoch, callbacks, log, backup_dir)
    except BaseException:
        # A run that fails before finishing its first epoch leaves nothing behind.
        if created and chief and not os.path.exists(os.path.join(config.output, "last.keras")):
            shutil.rmtree(config.output, ignore_errors=True)
        raise
    finally:
        if tmp_output:
            shutil.rmtree(tmp_output, ignore_errors=True)


def _fit(config, strategy, data, initial_epoch, callbacks, log, backup_dir):
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    train_ds = data.train
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(config.steps_per_epoch))
        train_ds = train_ds.take(steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    lr = config.lr if config.lr is not None else config.default_lr()
    input_shape = tuple(data.image_size) + (3,)

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config.model, input_shape, data.num_classes, rescale=config.rescale)
        from_logits = not outputs_are_probabilities(model)
        schedule = make_schedule(lr, total_steps, round(config.warmup_epochs * steps_per_epoch))
        optimizer = make_optimizer(config.optimizer, schedule, config.weight_decay, config.momentum)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=config.jit_compile,
        )

    monitor = "val_accuracy" if data.validation is not None else "accuracy"
    checkpoint = AtomicCheckpoint(config.output, monitor=monitor, mode="max")
    all_callbacks = [
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(config.output, "log.csv"), append=True),
        tensorboard_callback(os.path.join(config.output, "tensorboard")),
        keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
        *callbacks,
    ]
    log(
        f"Training {config.model} ({model.count_params():,} params, input {input_shape}, "
        f"{data.num_classes} classes) on {data.description}: {data.num_train} train / "
        f"{data.num_validation} validation examples, {config.epochs} epochs x {steps_per_epoch} steps, "
        f"batch {config.batch_size}, {config.optimizer} lr {lr:g}, {strategy.num_replicas_in_sync} replica(s)"
    )
    if initial_epoch:
        log(f"Resuming from epoch {initial_epoch + 1}/{config.epochs} (backup in {backup_dir})")
    with data_lib.data_errors(data.files):
        history = model.fit(
            train_ds,
            validation_data=data.validation,
            epochs=config.epochs,
            callbacks=all_callbacks,
            verbose=config.verbose,
            shuffle=False,  # the pipeline shuffles
        )
    metrics = {key: float(values[-1]) for key, values in history.history.items() if values}
    if not os.path.exists(checkpoint.best_path):  # e.g. a NaN metric all along: keep the last model
        shutil.copyfile(checkpoint.last_path, checkpoint.best_path)
    result = TrainResult(
        model=model,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        output=config.output,
        best_path=checkpoint.best_path,
        last_path=checkpoint.last_path,
        best_epoch=checkpoint.best_epoch,
        metrics=metrics,
        initial_epoch=initial_epoch,
        num_train=data.num_train,
        num_validation=data.num_validation,
        class_names=data.class_names,
        input_shape=input_shape,
    )
    run_info = {
        "config": dataclasses.asdict(config),
        "input_shape": input_shape,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "num_train": data.num_train,
        "num_validation": data.num_validation,
        "best": {"epoch": checkpoint.best_epoch, monitor: checkpoint.best, "path": checkpoint.best_path},
        "last": {"path": checkpoint.last_path, **metrics},
    }
    _write_json_atomic(os.path.join(config.output, "run.json"), run_info)
    return result


def evaluate(model, dataset, verbose=0, files=()):
    """{"loss", "accuracy"} of `model` on a pipeline from `data.make_pipeline`."""
    compile_for_eval(model)
    with data_lib.data_errors(files):
        results = model.evaluate(dataset, return_dict=True, verbose=verbose)
    return {k: float(v) for k, v in results.items()}
