"""Exact resume (issue 16): a run SIGKILLed at any point of an epoch, then rerun with the same
command, has each epoch once, in order, in log.csv, the TensorBoard scalars and run.json."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from keras_effconv import training
from keras_effconv.training import resume
from tests.workflow.conftest import leftovers
from tests.workflow.conftest import validation_loss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 3
ARGS = ("train", "--model", "DemoCNN", "--data", "synthetic:24", "--val-split", "0.25", "--epochs", str(EPOCHS),
        "--batch-size", "8", "--warmup-epochs", "0", "--quiet")


def _killed_run(out, point, epoch, *extra):
    """The training command (plus `extra` options) in a subprocess that SIGKILLs itself at `point` of `epoch`."""
    env = dict(os.environ, **{resume.KILL_ENV: f"{point}:{epoch}"})
    proc = subprocess.run([sys.executable, "-m", "keras_effconv.cli.main", *ARGS, *extra, "--output", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])


def _scalar_steps(folder):
    """{(run, tag): [steps...]} over every event file under `folder`, in file order."""
    steps = {}
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(f for f in files if "tfevents" in f):
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    steps.setdefault((os.path.relpath(root, folder), value.tag), []).append(int(event.step))
    return steps


def _assert_each_epoch_once(out):
    expected = list(range(EPOCHS))
    _, rows = resume.read_log(os.path.join(out, "log.csv"))
    assert [int(row["epoch"]) for row in rows] == expected
    steps = _scalar_steps(os.path.join(out, "tensorboard"))
    assert steps and all(v == expected for v in steps.values()), steps
    run = json.load(open(os.path.join(out, "run.json")))
    assert [e["epoch"] for e in run["epochs"]] == expected
    assert run["last"]["loss"] == pytest.approx(float(rows[-1]["loss"]))
    state = json.load(open(os.path.join(out, "best.json")))
    assert state["last_epoch"] == EPOCHS - 1 and 0 <= state["epoch"] < EPOCHS
    assert state["value"] == max(float(row["val_accuracy"]) for row in rows)
    assert not os.path.exists(os.path.join(out, "backup")) and leftovers(str(out)) == []
    assert training.load_model(os.path.join(out, "best.keras")) is not None


def _kill_and_resume(cli, tmp_path, point, epoch):
    out = tmp_path / "run"
    _killed_run(out, point, epoch)
    code, text, err = cli(*ARGS, "--output", out)
    assert code == 0, err
    _assert_each_epoch_once(str(out))
    return text


def test_kill_between_log_row_and_backup(cli, tmp_path):
    """The window of the issue: log.csv has the epoch-1 row, the backup has epoch 0 only."""
    text = _kill_and_resume(cli, tmp_path, "tensorboard", 1)
    assert f"Resuming from epoch 2/{EPOCHS}" in text


@pytest.mark.slow
def test_ema_run_killed_before_its_last_checkpoint_catches_up_with_the_average(cli, tmp_path):
    """The backup holds the raw weights; the checkpoint the rerun catches up with must hold their average,
    the weights the logged validation scores belong to."""
    out, ema = tmp_path / "run", ("--ema", "0.6", "--lr", "0.2")
    _killed_run(out, "backup", EPOCHS - 1, *ema)
    code, _, err = cli(*ARGS, *ema, "--output", out)
    assert code == 0, err
    _assert_each_epoch_once(str(out))
    _, rows = resume.read_log(os.path.join(out, "log.csv"))
    assert validation_loss(os.path.join(out, "last.keras")) == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("point,epoch", [
    ("batch", 0), ("log", 0), ("batch", 1), ("log", 1), ("backup_weights", 1), ("backup", 1), ("checkpoint", 1),
    ("tensorboard", 2), ("backup", 2), ("run_json", 2), ("finish", 2),
])
def test_kill_anywhere_then_resume(cli, tmp_path, point, epoch):
    _kill_and_resume(cli, tmp_path, point, epoch)


def test_reconcile_drops_uncommitted_and_torn_records(tmp_path):
    """log.csv with a duplicate row, a row past the backup and a half-written last line."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("epoch,loss\n0,1.5\n1,1.2\n1,1.2\n2,1.1\n3,1.")
    rows = resume.reconcile_logs(str(out), epochs=2)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert (out / "log.csv").read_text() == "epoch,loss\n0,1.5\n1,1.2\n"
