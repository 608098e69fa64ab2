"""A worker process for the multi-worker tests: `effconv train` with a tiny model and a step log.

    python -m tests.workflow.dist_runner STEP_LOG train ARGS...

Registers "TinyNet" (conv + dense, no BatchNorm, so a 2-replica step equals a 1-replica step on the
same global batch up to float rounding) and appends one JSON line per training step to STEP_LOG:
the optimizer step, the batch loss and a SHA-256 of every model weight (replicas in sync <=> equal).
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

from keras_effconv.cli import main as cli_main
from keras_effconv.cli import train as train_cli
from keras_effconv.training import cluster as training_cluster
from keras_effconv.training import models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_net(input_shape=(16, 16, 3), classes=5, weights=None, **kwargs):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="TinyNet")


def weights_digest(model):
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return digest.hexdigest()


class StepLog(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_batch_end(self, batch, logs=None):
        record = {
            "step": int(np.asarray(self.model.optimizer.iterations)),
            "loss": float((logs or {}).get("loss", float("nan"))),
            "weights": weights_digest(self.model),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def main(argv):
    step_log, argv = argv[0], argv[1:]
    models.LOCAL_MODELS["TinyNet"] = tiny_net
    args = cli_main.build_parser().parse_args(argv)
    try:
        return train_cli.run(args, callbacks=[StepLog(step_log)])
    except ValueError as error:
        print(f"effconv train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# --------------------------------------------------------------------------------------------------
# Test side: start and always end worker processes.


def env(**extra):
    values = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    values.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    values.pop("TF_CONFIG", None)
    values.update(extra)
    return values


def command(step_log, *args):
    return [sys.executable, "-m", "tests.workflow.dist_runner", str(step_log), "train", *map(str, args)]


@contextlib.contextmanager
def cluster(folder, args, workers=2):
    """Start `workers` worker processes (1 CPU device each) on 127.0.0.1 running `effconv train ARGS`
    (`args`: a sequence, or a function of the worker index giving one);
    yields the Popen objects (stdout/stderr in FOLDER/wI.out / wI.err, step logs in FOLDER/stepsI.jsonl);
    kills whatever still runs on exit, even when the test fails."""
    os.makedirs(folder, exist_ok=True)
    ports = training_cluster.free_ports(workers)
    procs, files = [], []
    try:
        for i in range(workers):
            out = open(os.path.join(folder, f"w{i}.out"), "w")
            err = open(os.path.join(folder, f"w{i}.err"), "w")
            files += [out, err]
            procs.append(subprocess.Popen(
                command(os.path.join(folder, f"steps{i}.jsonl"), *(args(i) if callable(args) else args)),
                stdout=out, stderr=err, env=env(TF_CONFIG=training_cluster.local_tf_config(ports, i)), cwd=REPO,
            ))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=60)
        for f in files:
            f.close()


def wait_all(procs, timeout):
    """Wait for every process (at most `timeout` seconds in all); returns their exit codes."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return [proc.returncode for proc in procs]


def read_steps(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
