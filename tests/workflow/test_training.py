"""keras_effconv.training: schedule, atomic checkpoints, resume after interruption, distribution."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_effconv import training
from tests.workflow.conftest import leftovers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(out, **kwargs):
    base = dict(model="DemoCNN", data="synthetic:40", output=str(out), epochs=4, batch_size=8, verbose=0,
                augment="none", val_split=0.2)
    base.update(kwargs)
    return training.TrainConfig(**base)


def _epochs(out):
    with open(os.path.join(out, "log.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_warmup_cosine_schedule():
    schedule = training.make_schedule(0.4, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)
    assert float(training.make_schedule(0.1, 10)(0)) == pytest.approx(0.1)


def test_optimizers_and_bad_names():
    sgd = training.make_optimizer("sgd", 0.1, weight_decay=5e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.weight_decay == 5e-4
    assert isinstance(training.make_optimizer("adamw", 1e-3, weight_decay=0.05), keras.optimizers.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        training.make_optimizer("lamb", 0.1)
    with pytest.raises(ValueError, match="strategy"):
        training.make_strategy("tpu")


def test_save_atomic_leaves_no_temp_files(tmp_path):
    model = training.demo_cnn((8, 8, 3), classes=2)
    training.save_atomic(model, str(tmp_path / "m.keras"))
    training.save_atomic(model, str(tmp_path / "m.keras"))  # replaces
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]
    assert keras.saving.load_model(str(tmp_path / "m.keras")).count_params() == model.count_params()


class Interrupt(keras.callbacks.Callback):
    """Simulates a crash at the end of epoch `at` (after the checkpoints and the backup are written)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt(f"simulated interruption after epoch {epoch}")


@pytest.mark.slow
def test_resume_after_interruption(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(_config(out), callbacks=[Interrupt(at=1)], log=lambda *a: None)
    assert training.backup_epoch(str(out)) == 2 and _epochs(out) == [0, 1]
    steps_done = 2 * 4  # 32 training examples / batch 8, two epochs
    messages = []
    result = training.train(_config(out), log=messages.append)
    assert result.initial_epoch == 2 and any("Resuming from epoch 3/4" in m for m in messages)
    assert _epochs(out) == [0, 1, 2, 3]  # nothing re-run, nothing skipped
    assert int(result.model.optimizer.iterations) == steps_done + 2 * 4  # optimizer state (and LR step) restored
    assert not (out / "backup").exists() and (out / "last.keras").is_file() and (out / "best.keras").is_file()
    assert json.load(open(out / "run.json"))["last"]["path"].endswith("last.keras")
    assert leftovers(str(out)) == []


@pytest.mark.slow
def test_label_smoothing_adamw_mixup_run(tmp_path):
    result = training.train(
        _config(tmp_path / "r", epochs=1, optimizer="adamw", label_smoothing=0.1, mixup=0.2, cutmix=1.0,
                augment="basic", val_split=0.0, steps_per_epoch=2),
        log=lambda *a: None,
    )
    assert np.isfinite(result.metrics["loss"]) and "val_loss" not in result.metrics
    assert int(result.model.optimizer.iterations) == 2


def _cli(*args):
    return [sys.executable, "-m", "keras_effconv.cli.main", *map(str, args)]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = tmp_path / "mirrored"
    proc = subprocess.run(
        _cli("train", "--model", "DemoCNN", "--data", "synthetic:48", "--epochs", "2", "--batch-size", "8",
             "--strategy", "mirrored", "--virtual-devices", "2", "--quiet", "--output", out),
        capture_output=True, text=True, env=_env(), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout
    assert _epochs(out) == [0, 1] and (out / "best.keras").is_file()


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL a training subprocess after two epochs, rerun the same command, check it resumed."""
    out = tmp_path / "killed"
    command = _cli("train", "--model", "DemoCNN", "--data", "synthetic:200", "--epochs", "8", "--batch-size", "16",
                   "--quiet", "--output", out)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.time() + 600
    try:
        while training.backup_epoch(str(out)) < 2:
            assert proc.poll() is None, "training finished before it could be killed; make it longer"
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = training.backup_epoch(str(out))
    assert 2 <= done < 8
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Resuming from epoch {done + 1}/8" in proc.stdout
    epochs = _epochs(out)
    assert epochs[-(8 - done):] == list(range(done, 8)) and set(epochs) == set(range(8))
    assert keras.saving.load_model(str(out / "last.keras")) is not None
