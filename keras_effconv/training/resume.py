"""Exact resume: one commit point per epoch, and the logs reconciled with it on restart.

At the end of an epoch `train` writes, in this order: the ``log.csv`` row, the TensorBoard scalars,
the backup (weights file, then ``training_metadata.json`` naming it, written atomically: the commit
point), then the checkpoints. A kill before the commit leaves log records of an epoch the backup does
not have; `reconcile_logs` removes them on restart, so the rerun writes that epoch exactly once. A
kill after the commit leaves the checkpoints one epoch behind; `AtomicCheckpoint` catches up from
the restored weights. Keras' own BackupAndRestore writes the weights and the metadata in place, so a
kill between the two resumes with weights one epoch ahead of the epoch counter.

Test hook: ``EFFCONV_TEST_KILL_AT=POINT:EPOCH`` makes the process SIGKILL itself at POINT of epoch
EPOCH (0-based); the points are listed in `KILL_POINTS`.
"""

import csv
import glob
import io
import json
import os
import signal

import keras
import tensorflow as tf

KILL_ENV = "EFFCONV_TEST_KILL_AT"
KILL_POINTS = ("batch", "log", "tensorboard", "backup_weights", "backup", "checkpoint", "run_json", "finish")
METADATA = "training_metadata.json"


def kill_point(point, epoch):
    """SIGKILL this process if EFFCONV_TEST_KILL_AT names this point and epoch (a test hook)."""
    if os.environ.get(KILL_ENV) == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


class KillSwitch(keras.callbacks.Callback):
    """Calls `kill_point` at the end of each epoch (or of batch 1, for point "batch")."""

    def __init__(self, point):
        super().__init__()
        self.point, self._epoch = point, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.point == "batch" and batch == 1:
            kill_point("batch", self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        kill_point(self.point, epoch)


def with_kill_points(callbacks):
    """`callbacks` with the point names in it replaced by KillSwitches (dropped unless the hook is set)."""
    armed = os.environ.get(KILL_ENV, "").split(":")[0]
    return [KillSwitch(c) if c == armed else c for c in callbacks if not isinstance(c, str) or c == armed]


def _write_atomic(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def backup_state(backup_dir):
    """{"epoch": completed epochs, "weights": file name} of the committed backup, or None."""
    path = os.path.join(backup_dir, METADATA)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        state = json.load(f)
    state.setdefault("weights", "latest.weights.h5")  # written by keras.callbacks.BackupAndRestore
    return state


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose per-epoch save is one atomic commit.

    The weights go to a new ``epoch-N.weights.h5``; then ``training_metadata.json`` naming it replaces
    the previous one (`os.replace`); older weight files are removed after. The backup is kept after
    training (the caller removes it once ``run.json`` is written).
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch = self._current_epoch
        name = f"epoch-{epoch}.weights.h5"
        tmp = os.path.join(self.backup_dir, f".tmp-{name}")
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        kill_point("backup_weights", epoch - 1)
        _write_atomic(os.path.join(self.backup_dir, METADATA), json.dumps({"epoch": epoch, "batch": 0, "weights": name}))
        for old in os.listdir(self.backup_dir):  # older weights and torn temporaries of a killed save
            if ".weights.h5" in old and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def _load_model(self):
        state = backup_state(self.backup_dir)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        self.model._initial_epoch = int(state["epoch"])  # what keras' BackupAndRestore sets for fit


def read_log(path):
    """(header, rows) of a CSVLogger file: complete lines only, as dicts; ([], []) if missing."""
    if not os.path.exists(path):
        return [], []
    with open(path, newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    lines = [line for line in lines if line.endswith("\n")]  # a kill can cut the last line short
    if not lines:
        return [], []
    reader = csv.DictReader(io.StringIO("".join(lines)))
    return list(reader.fieldnames or []), list(reader)


def _reconcile_csv(path, epochs):
    header, rows = read_log(path)
    kept, seen = [], set()
    for row in rows:
        epoch = int(row["epoch"])
        if epoch < epochs and epoch not in seen and None not in row.values():
            kept.append(row)
            seen.add(epoch)
    kept.sort(key=lambda row: int(row["epoch"]))
    if header:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        _write_atomic(path, out.getvalue())
    return kept


def _reconcile_events(path, epochs, steps_per_epoch):
    """Rewrite one event file without the summaries of epochs >= `epochs` (and a torn last record)."""
    from tensorflow.core.util import event_pb2

    kept, changed = [], False
    try:
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            tags = [value.tag for value in event.summary.value]
            limit = epochs * steps_per_epoch if any(t.endswith("_vs_iterations") for t in tags) else epochs
            if tags and event.step >= limit:
                changed = True
            else:
                kept.append(record.numpy())
    except tf.errors.DataLossError:
        changed = True
    if changed:
        tmp = f"{path}.tmp"
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in kept:
                writer.write(record)
        os.replace(tmp, path)


def reconcile_logs(output, epochs, steps_per_epoch=1):
    """Make log.csv and the TensorBoard scalars hold epochs 0..`epochs`-1 once each; returns the rows."""
    rows = _reconcile_csv(os.path.join(output, "log.csv"), epochs)
    for path in glob.glob(os.path.join(output, "tensorboard", "**", "*tfevents*"), recursive=True):
        if path.endswith(".tmp"):
            os.remove(path)
        else:
            _reconcile_events(path, epochs, steps_per_epoch)
    return rows


def row_metrics(row):
    """A log.csv row as {metric: float}, without the epoch column and CSVLogger's "NA" (absent) values."""
    metrics = {}
    for key, value in row.items():
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            continue
    metrics.pop("epoch", None)
    return metrics
