"""`effconv train --strategy multiworker` with 2 real worker processes on 127.0.0.1 (1 CPU device each).

Slow: every worker process imports TensorFlow and starts a gRPC server and the coordination service.
"""

import csv
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from keras_effconv import training
from tests.workflow import dist_runner

pytestmark = pytest.mark.slow

BASE = ("--model", "TinyNet", "--data", "synthetic:64", "--image-size", "16,16", "--batch-size", "16",
        "--augment", "none", "--val-split", "0.25", "--quiet")
ARGS = (*BASE, "--strategy", "multiworker")
STEPS_PER_EPOCH = 3  # 48 training examples / global batch 16


def _epochs(out):
    with open(os.path.join(out, "log.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _text(folder, name):
    with open(os.path.join(folder, name)) as f:
        return f.read()


def test_two_workers_stay_in_sync_match_one_process_and_only_the_chief_writes(tmp_path):
    out, out1 = tmp_path / "out", tmp_path / "worker1-output"
    common = (*ARGS, "--epochs", "2", "--worker-timeout", "300")
    reference_steps = tmp_path / "reference.jsonl"
    # The single-process reference (same global batch, the same custom loop) runs alongside the cluster.
    reference = subprocess.Popen(
        dist_runner.command(reference_steps, *BASE, "--epochs", "2", "--loop", "custom", "--output", tmp_path / "single"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dist_runner.env(), cwd=dist_runner.REPO,
    )
    try:
        # Worker 1 gets its own --output: it must not write anything there (it would only read a checkpoint).
        with dist_runner.cluster(tmp_path / "c", lambda i: (*common, "--output", out if i == 0 else out1)) as procs:
            codes = dist_runner.wait_all(procs, timeout=900)
        _, err = reference.communicate(timeout=900)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    assert codes == [0, 0], [_text(tmp_path / "c", f"w{i}.err")[-2000:] for i in range(2)]
    assert reference.returncode == 0, err[-2000:]

    steps = [dist_runner.read_steps(tmp_path / "c" / f"steps{i}.jsonl") for i in range(2)]
    assert [s["step"] for s in steps[0]] == [s["step"] for s in steps[1]] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [s["weights"] for s in steps[0]] == [s["weights"] for s in steps[1]]  # identical replicas, every step
    assert len({s["weights"] for s in steps[0]}) == len(steps[0])  # and they do train
    single = dist_runner.read_steps(reference_steps)
    np.testing.assert_allclose([s["loss"] for s in steps[0]], [s["loss"] for s in single], rtol=1e-4)

    assert "(chief)" in _text(tmp_path / "c", "w0.out") and "(chief)" not in _text(tmp_path / "c", "w1.out")
    for name in ("best.keras", "last.keras", "log.csv", "run.json", "best.json", "tensorboard"):
        assert (out / name).exists(), name
    assert not out1.exists()  # the non-chief wrote no checkpoint, log or model
    scratch = re.search(r"last checkpoint: +(\S+)last\.keras", _text(tmp_path / "c", "w1.out")).group(1)
    assert not os.path.exists(scratch)  # its scratch folder is gone
    run = json.loads((out / "run.json").read_text())
    assert run["throughput"]["replicas"] == 2 and _epochs(out) == [0, 1]
    assert training.load_model(str(out / "best.keras")).count_params() == 269


def test_killed_worker_fails_the_other_cleanly_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    args = (*ARGS, "--epochs", "8", "--worker-timeout", "120", "--output", out)
    with dist_runner.cluster(tmp_path / "first", args) as procs:
        deadline = time.monotonic() + 900
        while training.backup_epoch(str(out)) < 2:
            assert all(p.poll() is None for p in procs), "a worker ended before it could be killed; make it longer"
            assert time.monotonic() < deadline, "no checkpoint after 900 s"
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(timeout=60)
        # The survivor must give up by itself (collective abort, collective timeout or watchdog), not hang.
        code = dist_runner.wait_all(procs[:1], timeout=300)[0]
    err = _text(tmp_path / "first", "w0.err")
    assert code == 1, err[-3000:]
    assert "effconv train: error:" in err and "another worker probably died" in err and "Traceback" not in err
    done = training.backup_epoch(str(out))
    assert 2 <= done < 8 and not (out / "backup" / "worker-1").exists()

    with dist_runner.cluster(tmp_path / "second", args) as procs:
        codes = dist_runner.wait_all(procs, timeout=900)
    assert codes == [0, 0], [_text(tmp_path / "second", f"w{i}.err")[-2000:] for i in range(2)]
    assert f"Resuming from epoch {done + 1}/8" in _text(tmp_path / "second", "w0.out")
    assert f"Resuming from epoch {done + 1}/8" in _text(tmp_path / "second", "w1.out")
    steps = [dist_runner.read_steps(tmp_path / "second" / f"steps{i}.jsonl") for i in range(2)]
    expected = list(range(done * STEPS_PER_EPOCH + 1, 8 * STEPS_PER_EPOCH + 1))  # the LR schedule step goes on
    assert [s["step"] for s in steps[0]] == [s["step"] for s in steps[1]] == expected
    assert [s["weights"] for s in steps[0]] == [s["weights"] for s in steps[1]]
    epochs = _epochs(out)
    assert set(epochs) == set(range(8)) and epochs[-(8 - done):] == list(range(done, 8))
    assert not (out / "backup").exists() and (out / "last.keras").is_file()
