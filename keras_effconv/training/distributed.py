"""A custom training loop on `tf.distribute`, for `MultiWorkerMirroredStrategy` across hosts.

Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy` with several workers
(keras-team/keras#20585), so multi-worker runs use TensorFlow's engine directly: the Keras model and
optimizer inside `strategy.run`, `strategy.experimental_distribute_dataset` with an explicit
auto-shard policy, and the gradient all-reduce done by the Keras optimizer in replica context.
It keeps the recipe and the outputs of the `fit` path (same model, schedule, optimizer, loss, data
pipeline; the same callbacks write ``best.keras`` / ``last.keras`` / ``log.csv`` / TensorBoard /
``run.json``) and replaces ``BackupAndRestore`` with a `tf.train.CheckpointManager` in
``OUTPUT/backup``: written by the chief only (the checkpoint state file is replaced atomically, so a
kill mid-save leaves the previous checkpoint), read by every worker when the same command is run again.

With several workers the output folder must be on a filesystem every worker can read (the chief
writes, the others read the checkpoint to resume); non-chief workers write their logs to a scratch
folder that is deleted at the end.
"""

import contextlib
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import data as data_lib
from keras_effconv.training import cluster
from keras_effconv.training.callbacks import _write_json_atomic

LOOPS = ("auto", "fit", "custom")
METADATA = "training_metadata.json"  # read by `backup_epoch` (the same name as BackupAndRestore's)


def uses_custom_loop(config, strategy):
    """True when `train` must use this loop: multi-worker runs (fit cannot), or `config.loop == "custom"`."""
    if getattr(config, "loop", "auto") == "custom":
        return True
    if getattr(config, "loop", "auto") == "fit":
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError("`loop`='fit' cannot train under MultiWorkerMirroredStrategy (keras-team/keras#20585); "
                             "use loop='auto' or 'custom'")
        return False
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def shard_policy(data):
    """DATA sharding (every worker reads all, keeps its part of each global batch) for in-memory and
    generated data; AUTO (file sharding when there are enough files, else DATA) for file-backed data."""
    policy = tf.data.experimental.AutoShardPolicy
    return policy.AUTO if data.files else policy.DATA


def distribute(strategy, dataset, policy):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def make_steps(strategy, model, optimizer, from_logits, label_smoothing, jit_compile=False):
    """(train_step, eval_step): tf.functions over one distributed batch, returning global sums
    (loss * examples, correct predictions, examples) reduced over all replicas."""
    per_example = keras.losses.CategoricalCrossentropy(
        from_logits=from_logits, label_smoothing=label_smoothing, reduction=None
    )

    def sums(labels, predictions, loss):
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(labels, -1), tf.argmax(predictions, -1)), tf.float32))
        return tf.stack([loss, correct, tf.cast(tf.shape(labels)[0], tf.float32)])

    @tf.function(jit_compile=bool(jit_compile))
    def gradients(images, labels, global_count):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss_sum = tf.reduce_sum(per_example(labels, predictions))
            loss = loss_sum / global_count  # the mean over the global batch, once summed over replicas
            if model.losses:
                loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        return grads, predictions, loss_sum

    def train_replica(images, labels):
        context = tf.distribute.get_replica_context()
        global_count = context.all_reduce("sum", tf.cast(tf.shape(labels)[0], tf.float32))
        grads, predictions, loss_sum = gradients(images, labels, tf.maximum(global_count, 1.0))
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduces (sums) the gradients
        return sums(labels, predictions, loss_sum)

    def eval_replica(images, labels):
        predictions = model(images, training=False)
        return sums(labels, predictions, tf.reduce_sum(per_example(labels, predictions)))

    @tf.function
    def train_step(batch):
        return strategy.reduce("sum", strategy.run(train_replica, args=batch), axis=None)

    @tf.function
    def eval_step(batch):
        return strategy.reduce("sum", strategy.run(eval_replica, args=batch), axis=None)

    return train_step, eval_step


def _mean(totals):
    loss, correct, count = (float(v) for v in totals)
    count = max(count, 1.0)
    return loss / count, correct / count


class LoopState:
    """The resumable state: model + optimizer (+ LR schedule step) + finished epochs, in OUTPUT/backup."""

    def __init__(self, directory, model, optimizer, chief):
        self.directory, self.chief = directory, chief
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="finished_epochs")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch)
        self.manager = (
            tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2) if chief else None
        )

    def restore(self):
        """Restore the latest checkpoint (if any); returns the number of finished epochs."""
        latest = tf.train.latest_checkpoint(self.directory) if os.path.isdir(self.directory) else None
        if latest is None:
            return 0
        self.checkpoint.restore(latest).expect_partial()
        return int(self.epoch.numpy())

    def save(self, finished_epochs):
        self.epoch.assign(finished_epochs)
        if not self.chief:
            return
        self.manager.save(checkpoint_number=finished_epochs)
        _write_json_atomic(os.path.join(self.directory, METADATA), {"epoch": int(finished_epochs)})


def run_loop(config, strategy, data, train_ds, model, optimizer, from_logits, epoch_callbacks, log, backup_dir, chief):
    """Train `model` for the remaining epochs of `config`; returns (history, initial_epoch, throughput).

    throughput: per epoch, steady-state training samples (all workers) per wall second and per CPU
    second of this process (the first step of each epoch, which may trace, is left out).
    """
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    state = LoopState(backup_dir, model, optimizer, chief)
    initial_epoch = state.restore()
    if initial_epoch:
        log(f"Resuming from epoch {initial_epoch + 1}/{config.epochs} (checkpoint in {backup_dir})")
    train_step, eval_step = make_steps(strategy, model, optimizer, from_logits, config.label_smoothing,
                                       config.jit_compile)
    policy = shard_policy(data)
    dist_train = distribute(strategy, train_ds, policy)
    dist_val = distribute(strategy, data.validation, policy) if data.validation is not None else None
    task_type, task_id = cluster.task_info(strategy)
    watchdog = cluster.Watchdog(config.worker_timeout or 0, name=f"{task_type} {task_id}").start()
    history = keras.callbacks.History()
    callbacks = keras.callbacks.CallbackList([*epoch_callbacks, history], model=model)
    throughput = {"samples_per_second": [], "samples_per_cpu_second": []}
    log(f"Custom training loop: {strategy.__class__.__name__}, {strategy.num_replicas_in_sync} replica(s), "
        f"task {task_type} {task_id}{' (chief)' if chief else ''}, input sharding {policy.name}")
    with peer_errors(strategy), data_lib.data_errors(data.files):
        try:
            callbacks.on_train_begin()
            for epoch in range(initial_epoch, config.epochs):
                callbacks.on_epoch_begin(epoch)
                logs, rates = _epoch(epoch, dist_train, dist_val, train_step, eval_step, callbacks, watchdog)
                for key, value in zip(throughput, rates):
                    throughput[key].append(value)
                callbacks.on_epoch_end(epoch, dict(logs))
                state.save(epoch + 1)
                watchdog.beat(f"epoch {epoch + 1} end")
                log(f"Epoch {epoch + 1}/{config.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
                    + f", {rates[0]:.1f} samples/s")
            callbacks.on_train_end()
        finally:
            watchdog.stop()
    return history.history, initial_epoch, throughput  # the caller removes the backup after run.json


def _epoch(epoch, dist_train, dist_val, train_step, eval_step, callbacks, watchdog):
    """One epoch of training (+ validation): (logs, (samples/s, samples per CPU second))."""
    totals, timed, start = np.zeros(3), 0.0, None
    for step, batch in enumerate(dist_train):
        step_totals = train_step(batch).numpy()
        totals += step_totals
        watchdog.beat(f"epoch {epoch + 1} step {step + 1}")
        if step == 0:
            start = time.perf_counter(), time.process_time()
        else:
            timed += step_totals[2]
        callbacks.on_train_batch_end(step, {"loss": float(step_totals[0] / max(step_totals[2], 1.0))})
    rates = (float("nan"), float("nan"))
    if start is not None and timed:
        rates = (float(timed / (time.perf_counter() - start[0])),
                 float(timed / max(time.process_time() - start[1], 1e-9)))
    logs = dict(zip(("loss", "accuracy"), _mean(totals)))
    if dist_val is not None:
        val = np.zeros(3)
        for batch in dist_val:
            val += eval_step(batch).numpy()
            watchdog.beat(f"epoch {epoch + 1} validation")
        logs.update(zip(("val_loss", "val_accuracy"), _mean(val)))
    return logs, rates


@contextlib.contextmanager
def peer_errors(strategy):
    """Turn the errors of aborted collective operations (a peer worker died: the coordination service
    stops seeing its heartbeats, or a collective times out) into one-line `PeerFailure`s."""
    try:
        yield
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError) as error:
        if cluster.num_workers(cluster.parse_tf_config()) < 2:
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = " ".join(lines[:2])
        if "}}" in detail:  # drop the "{{function_node ...}}" prefix
            detail = detail.split("}}", 1)[1].strip()
        raise cluster.PeerFailure(
            f"a collective operation with the other workers failed ({type(error).__name__}: {detail[:300]}); "
            "another worker probably died. Restart all workers with the same command to resume"
        ) from None
