"""Callbacks of `train`: atomic checkpoints, EMA weights, and TensorBoard scalars without the tensorboard package."""

import contextlib
import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_effconv._paths import temp_prefix


def save_atomic(model, path):
    """`model.save(path)` through a temporary file in the same folder and `os.replace`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp.keras", dir=folder)
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


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time of the epoch, validation included) to the epoch logs, so
    `CSVLogger` and `run.json` record it. Put it before the loggers."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras`` every epoch and ``best.keras`` on improvement of `monitor`, atomically.

    ``best.json`` keeps the best value and the last epoch saved, so a resumed run neither overwrites a
    better model nor misses an epoch: given `resume_row` (the last committed log row, see
    `training.resume`), it saves that epoch's models at train begin if a kill came before it could.
    Place it after the backup callback (whose on_train_begin restores the weights). With `ema` (an
    `EMAWeights`), that catch-up saves the averaged weights, as the epoch end would have.
    """

    def __init__(self, directory, monitor="val_accuracy", mode="max", resume_row=None, ema=None):
        super().__init__()
        self.directory = directory
        self.monitor, self.mode = monitor, mode
        self.resume_row = resume_row
        self.ema = ema
        self.best_path = os.path.join(directory, "best.keras")
        self.last_path = os.path.join(directory, "last.keras")
        self.state_path = os.path.join(directory, "best.json")
        self.best, self.best_epoch, self.last_epoch = None, None, -1

    def on_train_begin(self, logs=None):
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            if state.get("monitor") == self.monitor:
                self.best, self.best_epoch = state["value"], state["epoch"]
            self.last_epoch = int(state.get("last_epoch", -1))
        if self.resume_row is not None:
            epoch, metrics = self.resume_row
            if self.last_epoch < epoch:
                with self.ema.averaged() if self.ema else contextlib.nullcontext():
                    self.on_epoch_end(epoch, dict(metrics))

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
        self.last_epoch = int(epoch)
        _write_json_atomic(self.state_path, {"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch,
                                             "last_epoch": self.last_epoch})


def batchnorm_layers(model):
    """The BatchNormalization layers (Keras' and subclasses) of `model` that training updates."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def batchnorm_statistics(model):
    """The moving mean and variance variables of `batchnorm_layers(model)`, in order."""
    return [v for layer in batchnorm_layers(model) for v in (layer.moving_mean, layer.moving_variance)]


def reestimate_batchnorm(model, batches):
    """Set each BatchNorm layer's moving statistics to the mean of its batch statistics over `batches`
    (image tensors), by training-mode forward passes with momentum 1 - 1/k at the k-th batch. Only the
    moving statistics change; each layer's momentum is restored."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    try:
        for k, images in enumerate(batches, start=1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / k
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def _values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """`SwapEMAWeights(swap_on_epoch=True)`: validation and the callbacks after it in an epoch's end see
    the optimizer's moving average of the weights (`use_ema=True`); training steps see the raw weights.

    Keras averages the trainable variables only, and BatchNorm's moving statistics, gathered with the
    raw weights, do not fit their average: early in a run they can put the averaged model at chance.
    So, given `calibration` (a dataset of training batches, see `Data.make_calibration`), each swap to
    the average re-estimates those statistics on its first `batches` batches (once per training step
    count; the same batches every time), and each swap back restores the raw ones.

    Place it after the backup (which must save the raw weights and, in the optimizer's variables, their
    average, to resume exactly) and before the checkpoints (which then hold the weights that were scored).
    """

    def __init__(self, calibration=None, batches=10):
        super().__init__(swap_on_epoch=True)
        self.calibration, self.batches = calibration, int(batches)
        self._images = None
        self._raw_stats = self._average_stats = None
        self._stats_step = None

    def _swap_variables(self):
        to_average = not self._ema_weights_in_model  # the callers flip the flag after the swap
        super()._swap_variables()
        variables = batchnorm_statistics(self.model) if self.calibration is not None else []
        if not variables:
            return
        if not to_average:
            _assign(variables, self._raw_stats)
            return
        self._raw_stats = _values(variables)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if self._stats_step == step:  # the same average as last time: the same statistics
            _assign(variables, self._average_stats)
            return
        if self._images is None:
            self._images = [images for images, _ in self.calibration.take(self.batches)]
        reestimate_batchnorm(self.model, self._images)
        self._average_stats, self._stats_step = _values(variables), step

    @contextlib.contextmanager
    def averaged(self):
        """The averaged weights in the model inside the block, whichever set was in it before."""
        if self._ema_weights_in_model:
            yield
            return
        self._swap_variables()
        self._ema_weights_in_model = True
        try:
            yield
        finally:
            self._swap_variables()
            self._ema_weights_in_model = False


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
