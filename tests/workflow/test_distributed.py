"""The custom tf.distribute training loop, in one process: TF_CONFIG checks, parity with `fit`,
resume, MirroredStrategy on 2 logical CPUs, the watchdog. Real multi-worker runs:
test_distributed_multiworker.py (slow)."""

import csv
import json
import os
import subprocess
import time

import keras
import numpy as np
import pytest

from keras_effconv import training
from keras_effconv.cli.main import main
from keras_effconv.training import cluster
from keras_effconv.training import models
from tests.workflow import dist_runner

ARGS = ("--model", "TinyNet", "--data", "synthetic:48", "--image-size", "16,16", "--batch-size", "8",
        "--augment", "none", "--val-split", "0.25", "--shuffle-buffer", "1", "--quiet")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(models.LOCAL_MODELS, "TinyNet", dist_runner.tiny_net)
    monkeypatch.delenv("TF_CONFIG", raising=False)


def _config(out, **kwargs):
    base = dict(model="TinyNet", data="synthetic:48", image_size=(16, 16), output=str(out), epochs=2, batch_size=8,
                verbose=0, augment="none", val_split=0.25, shuffle_buffer=1)
    base.update(kwargs)
    return training.TrainConfig(**base)


def _log(out):
    with open(os.path.join(out, "log.csv")) as f:
        return list(csv.DictReader(f))


def _good(kind="worker", index=0):
    return {"cluster": {"worker": ["127.0.0.1:1111", "127.0.0.1:2222"]}, "task": {"type": kind, "index": index}}


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "no 'cluster'"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}), "no 'task'"),
    (json.dumps(_good(index=2)), "task index 2 is out of range: cluster\\['worker'\\] has 2"),
    (json.dumps(_good(index=-1)), "task index -1 is out of range"),
    (json.dumps(_good(kind="boss")), "task type 'boss' is unknown"),
    (json.dumps(_good(kind="chief")), "task type 'chief' is not in the cluster"),
    (json.dumps({"cluster": {"trainer": ["a:1"]}, "task": {"type": "trainer", "index": 0}}), "unknown task type 'trainer'"),
    (json.dumps({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}), "'nohost' is not 'host:port'"),
])
def test_bad_tf_config_is_named_in_one_line(text, message, monkeypatch, capsys):
    with pytest.raises(ValueError, match=message):
        cluster.parse_tf_config(text)
    monkeypatch.setenv("TF_CONFIG", text)
    assert main(["train", "--strategy", "multiworker", "--output", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("effconv train: error: TF_CONFIG") and "\n" not in err


def test_strategy_names_and_tf_config_auto_selection(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster.parse_tf_config() is None
    assert [cluster.strategy_name(n) for n in ("multi-worker", "multiworker", "default", "mirrored")] == [
        "multiworker", "multiworker", "default", "mirrored"]
    monkeypatch.setenv("TF_CONFIG", json.dumps(_good()))
    assert cluster.strategy_name("default") == "multiworker"
    assert cluster.num_workers(cluster.parse_tf_config()) == 2
    with pytest.raises(ValueError, match="strategy.*received strategy='ring'"):
        training.make_strategy("ring")


def test_custom_loop_matches_fit(tiny, tmp_path):
    """The reference is Keras fit: same model, data order, schedule -> the same per-epoch metrics."""
    fit = training.train(_config(tmp_path / "fit", loop="fit"), log=lambda *_: None)
    custom = training.train(_config(tmp_path / "custom", loop="custom"), log=lambda *_: None)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(custom.history[key], fit.history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert [row.keys() for row in _log(tmp_path / "custom")] == [row.keys() for row in _log(tmp_path / "fit")]
    for name in ("best.keras", "last.keras", "run.json", "tensorboard"):
        assert (tmp_path / "custom" / name).exists(), name
    assert not (tmp_path / "custom" / "backup").exists()  # removed when the run finishes
    run = json.loads((tmp_path / "custom" / "run.json").read_text())
    assert run["throughput"]["replicas"] == 1 and len(run["throughput"]["samples_per_second"]) == 2
    rates = run["throughput"]["samples_per_second"] + run["throughput"]["samples_per_cpu_second"]
    assert all(isinstance(v, float) and v > 0 for v in rates)
    saved = training.load_model(str(tmp_path / "custom" / "last.keras"))
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(saved.predict(x, verbose=0), custom.model.predict(x, verbose=0), atol=1e-6)


class _Stop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_custom_loop_resumes_after_interruption(tiny, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(_config(out, loop="custom", epochs=4), callbacks=[_Stop()], log=lambda *_: None)
    assert training.backup_epoch(str(out)) == 2  # the interrupted third epoch is not saved
    lines = []
    result = training.train(_config(out, loop="custom", epochs=4), log=lines.append)
    assert result.initial_epoch == 2 and any("Resuming from epoch 3/4" in line for line in lines)
    assert [int(row["epoch"]) for row in _log(out)] == [0, 1, 2, 2, 3]  # the interrupted epoch is redone
    assert int(result.model.optimizer.iterations.numpy()) == 4 * 5  # LR schedule step restored (5 steps/epoch)
    reference = training.train(_config(tmp_path / "straight", loop="custom", epochs=4), log=lambda *_: None)
    np.testing.assert_allclose(result.history["loss"], reference.history["loss"][2:], rtol=1e-5)


@pytest.mark.slow
def test_mirrored_two_logical_cpus_custom_loop_matches_one_device(tiny, tmp_path):
    """MirroredStrategy over 2 logical CPUs (a subprocess: devices are fixed at TF start-up) takes the same
    steps as one device with the same global batch."""
    steps = tmp_path / "steps.jsonl"
    proc = subprocess.run(
        dist_runner.command(steps, *ARGS, "--epochs", "2", "--strategy", "mirrored", "--virtual-devices", "2",
                            "--loop", "custom", "--output", tmp_path / "mirrored"),
        capture_output=True, text=True, env=dist_runner.env(), cwd=dist_runner.REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MirroredStrategy, 2 replica(s)" in proc.stdout
    reference = tmp_path / "reference.jsonl"
    training.train(_config(tmp_path / "one", loop="custom"), callbacks=[dist_runner.StepLog(str(reference))],
                   log=lambda *_: None)
    mirrored, single = dist_runner.read_steps(steps), dist_runner.read_steps(reference)
    assert [s["step"] for s in mirrored] == [s["step"] for s in single] == list(range(1, 11))
    np.testing.assert_allclose([s["loss"] for s in mirrored], [s["loss"] for s in single], rtol=1e-5)
    assert len({s["weights"] for s in mirrored}) == 10  # the weights change every step


def test_watchdog_fires_only_without_progress():
    messages = []
    watchdog = cluster.Watchdog(3.0, name="worker 1", on_timeout=messages.append).start()
    for step in range(8):  # beats every 0.2 s: no timeout
        watchdog.beat(f"epoch 1 step {step + 1}")
        time.sleep(0.2)
    assert messages == []
    for _ in range(300):  # then silence
        if messages:
            break
        time.sleep(0.1)
    watchdog.stop()
    assert messages and messages[0].startswith("worker 1: no training progress for 3 s (after epoch 1 step 8)")


def test_imagenet_recipe_scales_batch_and_lr_linearly():
    import importlib.util

    spec = importlib.util.spec_from_file_location("imagenet_recipe", os.path.join(dist_runner.REPO, "recipes",
                                                                                  "imagenet", "train.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv, smoke = recipe.recipe_argv(["--replicas", "8", "--output", "o"])
    assert argv == ["--batch-size", "512", "--lr", "0.2", "--output", "o"] and not smoke
    argv, _ = recipe.recipe_argv(["--replicas", "64", "--per-replica-batch", "32"])
    assert argv[:4] == ["--batch-size", "2048", "--lr", "0.8"]
    argv, smoke = recipe.recipe_argv(["--smoke", "--epochs", "3"])
    assert smoke and argv[argv.index("--data") + 1].startswith("synthetic") and argv[-2:] == ["--epochs", "3"]
    from keras_effconv.training import recipes

    assert recipes.RECIPES["imagenet"]["strategy"] == "multiworker"
    with pytest.raises(SystemExit, match="--replicas and --per-replica-batch must be >= 1"):
        recipe.recipe_argv(["--replicas", "0"])
