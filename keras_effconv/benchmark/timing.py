"""Timing primitives shared by the model and layer benchmarks.

Rules (see DEVELOPERS.md, "Performance rules"): everything that is not steady-state execution
(tracing, XLA compilation, TFLite conversion, interpreter allocation, optimizer creation) happens in
the warm-up calls, outside the timed region; every timed call ends with a host sync (outputs are
converted to numpy); clocks are `time.perf_counter`.
"""

import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import numpy as np


@dataclasses.dataclass
class Timing:
    """Summary of the timed (warm) calls of one measurement, in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    first_call_s: float  # the first warm-up call: trace + compile (+ allocation); not in the stats
    samples_ms: list

    @classmethod
    def from_samples(cls, samples_s, warmup=0, first_call_s=float("nan")):
        if not len(samples_s):
            raise ValueError(f"`samples_s` must not be empty; received samples_s={samples_s!r}")
        ms = np.asarray(samples_s, dtype=np.float64) * 1e3
        return cls(
            median_ms=float(np.median(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=float(np.mean(ms)),
            min_ms=float(np.min(ms)),
            max_ms=float(np.max(ms)),
            runs=int(ms.size),
            warmup=int(warmup),
            first_call_s=float(first_call_s),
            samples_ms=[round(float(v), 4) for v in ms],
        )

    def to_dict(self):
        return dataclasses.asdict(self)


def sync(outputs):
    """Force completion of (possibly asynchronous) TF outputs by copying them to host numpy arrays."""
    if isinstance(outputs, dict):
        return {k: sync(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [sync(v) for v in outputs]
    if hasattr(outputs, "numpy"):
        return outputs.numpy()
    return np.asarray(outputs)


def measure(fn, runs=10, warmup=2):
    """Call `fn` `warmup` times untimed (the first one is timed separately as `first_call_s`), then
    `runs` times timed. `fn` must block until its result is on the host (use `sync`)."""
    result = measure_in_turn({"fn": fn}, runs=runs, warmup=warmup).timings["fn"]
    if isinstance(result, BaseException):
        raise result
    return result


@dataclasses.dataclass
class InTurn:
    """`measure_in_turn`'s answer: {name: Timing or the exception its calls raised}, the wall and
    CPU seconds (this process) each name's calls took, warm-up included, and the CPU ms per timed call."""

    timings: dict
    wall_s: dict
    cpu_s: dict
    cpu_ms: dict  # {name: process CPU ms of each timed call}, in the order of the Timing's samples


def measure_in_turn(fns, runs=10, warmup=2, rounds=1):
    """Time the callables `fns` ({name: fn}) against each other on a machine whose speed drifts.

    Each is warmed up first (`warmup` untimed calls, the first one timed as `first_call_s`), then
    `rounds` rounds time every callable ceil(runs / rounds) times in turn, the order reversed every
    other round, so that a change of load hits all of them alike. A callable that raises is recorded
    and dropped from the later rounds; the others go on. `fn` must block until its result is on the host.
    """
    for name, value in (("runs", runs), ("warmup", warmup), ("rounds", rounds)):
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1 (the first warm-up call traces/compiles); received {name}={value!r}")
    per_round = -(-runs // rounds)
    wall, cpu = dict.fromkeys(fns, 0.0), dict.fromkeys(fns, 0.0)
    failed, first = {}, {}
    samples, cpu_ms = {name: [] for name in fns}, {name: [] for name in fns}

    def call(name):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            fns[name]()
        except Exception as error:  # noqa: BLE001 - one failing callable must not stop the others
            failed[name] = error
        elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        wall[name] += elapsed
        cpu[name] += cpu_elapsed
        return elapsed, cpu_elapsed

    for name in fns:
        for _ in range(warmup):
            first.setdefault(name, call(name)[0])
            if name in failed:
                break
    order = list(fns)
    for index in range(rounds):
        for name in order if index % 2 == 0 else order[::-1]:
            for _ in range(per_round):
                if name in failed:
                    break
                elapsed, cpu_elapsed = call(name)
                samples[name].append(elapsed)
                cpu_ms[name].append(cpu_elapsed * 1e3)
    timings = {
        name: failed.get(name) or Timing.from_samples(samples[name], warmup=warmup, first_call_s=first[name])
        for name in fns
    }
    return InTurn(timings, wall, cpu, cpu_ms)


def interleaved_median_ms(fn_a, args_a, fn_b, args_b, runs, warmup):
    """Median wall and process-CPU ms of `runs` warm runs of two functions, timed in turn run by run
    (`measure_in_turn` with one run per round) so that both see the same machine load. Returns
    ``(wall_a, wall_b, cpu_a, cpu_b)``; CPU time is less sensitive to other processes (but counts
    the worker threads' spin-waits). Each call ends with a host sync; an error is raised."""
    measured = measure_in_turn({"a": lambda: sync(fn_a(*args_a)), "b": lambda: sync(fn_b(*args_b))},
                               runs=runs, warmup=warmup, rounds=runs)
    for result in measured.timings.values():
        if isinstance(result, BaseException):
            raise result
    return (measured.timings["a"].median_ms, measured.timings["b"].median_ms,
            statistics.median(measured.cpu_ms["a"]), statistics.median(measured.cpu_ms["b"]))


def configure_threads(threads=None):
    """Pin TF's intra/inter-op pools to `threads` (default: all cores, which is TF's default too).

    Must run before the TF runtime is initialised; afterwards TF refuses and the current values are
    reported instead. Returns {"intra_op": n, "inter_op": n, "applied": bool}.
    """
    import tensorflow as tf

    threads = int(threads or os.cpu_count() or 1)
    applied = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        applied = False
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"intra_op": intra, "inter_op": inter, "requested": threads, "applied": applied}


def _version(dist):
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - not installed / no metadata
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def _git_revision():
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except Exception:  # noqa: BLE001 - git missing or not a checkout
        return None


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads=None):
    """CPU, load and library versions, for the JSON reports."""
    import platform

    import keras
    import tensorflow as tf

    import keras_effconv

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": _version("ai-edge-litert"),
        "numpy": np.__version__,
        "keras_effconv": getattr(keras_effconv, "__version__", None),
        "git_revision": _git_revision(),
        "threads": threads,
        "load_average_at_start": load_average(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def busy_warning(threshold=0.5):
    """A warning string if the 1-minute load average says other processes compete for the cores."""
    load = load_average()
    cores = os.cpu_count() or 1
    if load and load[0] > threshold * cores:
        return (
            f"WARNING: 1-min load average is {load[0]:.2f} on {cores} cores: other processes are "
            "running, timings will be noisy (compare ratios within one run, not absolute ms)."
        )
    return None


@contextlib.contextmanager
def captured_output():
    """Silence stdout/stderr, both Python-level (the converter's "Saved artifact" dump) and at the
    file-descriptor level (TF's C++ logs), while still surfacing the tail if the body raises."""
    import io

    python_sink = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real fds (some embedded consoles): Python-level only
        saved = None
    with tempfile.TemporaryFile(mode="w+b") as sink:
        if saved is not None:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(python_sink), contextlib.redirect_stderr(python_sink):
                yield
        except BaseException as error:
            if saved is not None:
                _restore(saved)
                saved = None
            sink.seek(0)
            tail = (python_sink.getvalue() + sink.read().decode("utf-8", "replace"))[-2000:]
            if tail.strip():
                error.add_note(f"captured output (tail):\n{tail}")
            raise
        finally:
            if saved is not None:
                _restore(saved)


def _restore(saved):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def error_summary(error, limit=300):
    """`ValueError: message` shortened to one line, for JSON cells and table footnotes."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
