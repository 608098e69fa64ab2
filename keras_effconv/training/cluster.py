"""The cluster side of multi-worker training: TF_CONFIG checks, the strategy, the chief, a watchdog.

`MultiWorkerMirroredStrategy` reads the cluster from the ``TF_CONFIG`` environment variable; a
malformed one makes TensorFlow fail late with an obscure message (or wait forever for a worker that
does not exist), so `parse_tf_config` checks it first and names what is wrong in one line.
"""

import json
import os
import socket
import sys
import threading
import time

import tensorflow as tf

TASK_TYPES = ("chief", "worker", "evaluator", "ps")
# Spellings of the multi-worker strategy (`multi-worker` is the older one).
MULTI_WORKER = ("multiworker", "multi-worker")


class PeerFailure(RuntimeError):
    """Another worker died or stopped answering: this one gives up instead of hanging."""


def parse_tf_config(text=None):
    """The parsed ``TF_CONFIG`` (`text`, default the environment variable), or None when unset/empty.

    Raises ValueError naming the problem: bad JSON, no cluster, no task, an unknown task type, an
    index out of range, or an address that is not ``host:port``.
    """
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    if not text.strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); received TF_CONFIG={text!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task'; received TF_CONFIG={text!r}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no 'cluster' (a mapping of task type to addresses); received TF_CONFIG={text!r}")
    for kind, addresses in cluster.items():
        if kind not in TASK_TYPES:
            raise ValueError(f"TF_CONFIG cluster has an unknown task type {kind!r} (expected one of {TASK_TYPES})")
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG cluster[{kind!r}] must be a non-empty list of 'host:port'; received {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"TF_CONFIG cluster[{kind!r}] address {address!r} is not 'host:port'")
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise ValueError(f"TF_CONFIG cluster['chief'] must hold exactly one address; received {cluster['chief']!r}")
    if "ps" in cluster:
        raise ValueError("TF_CONFIG has 'ps' tasks: parameter-server training is not supported; "
                         "list only 'chief'/'worker' tasks for MultiWorkerMirroredStrategy")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG has no 'task' with 'type' and 'index' (which worker is this?); received TF_CONFIG={text!r}")
    kind, index = task["type"], task["index"]
    if kind not in TASK_TYPES:
        raise ValueError(f"TF_CONFIG task type {kind!r} is unknown (expected one of {TASK_TYPES})")
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task type {kind!r} is not in the cluster (which has {sorted(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ValueError(
            f"TF_CONFIG task index {index!r} is out of range: cluster[{kind!r}] has {len(cluster[kind])} address(es)"
        )
    return config


def free_ports(count, host="127.0.0.1"):
    """`count` distinct free TCP ports on `host` (bound to port 0 together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_tf_config(ports, index, host="127.0.0.1"):
    """The TF_CONFIG (JSON) of worker `index` of a cluster of local workers listening on `ports`."""
    return json.dumps({"cluster": {"worker": [f"{host}:{port}" for port in ports]},
                       "task": {"type": "worker", "index": int(index)}})


def num_workers(tf_config):
    """Number of training tasks (chief + workers) in a parsed TF_CONFIG (1 without one)."""
    if not tf_config:
        return 1
    return sum(len(tf_config["cluster"].get(kind, [])) for kind in ("chief", "worker"))


def strategy_name(name):
    """Canonical strategy name: both multi-worker spellings -> "multiworker"; "default" becomes
    "multiworker" when TF_CONFIG is set (the way cluster launchers start every task)."""
    if name in MULTI_WORKER:
        return "multiworker"
    if name == "default" and parse_tf_config() is not None:
        return "multiworker"
    return name


def make_multiworker_strategy(timeout_seconds=None):
    """`MultiWorkerMirroredStrategy` from TF_CONFIG (checked first), ring all-reduce.

    `timeout_seconds` bounds every collective (all-reduce, broadcast): a dead peer then raises
    DeadlineExceededError instead of blocking forever.
    """
    tf_config = parse_tf_config()
    if tf_config is not None and tf_config["task"]["type"] == "evaluator":
        raise ValueError("TF_CONFIG task type 'evaluator' does not train; run `effconv evaluate` on that task instead")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=float(timeout_seconds) if timeout_seconds else None,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def task_info(strategy):
    """(task_type, task_id) of this process; ("worker", 0) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "worker", 0
    return resolver.task_type or "worker", int(resolver.task_id or 0)


def is_chief(strategy):
    """True for the task that writes checkpoints and logs: 'chief', else worker 0 (or no cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


class Watchdog:
    """Ends the process with a one-line message when no step finishes for `timeout` seconds.

    Collective timeouts cover all-reduces, but a worker can also block in the input pipeline's
    cross-worker handshake or in the coordination service; this bounds every wait. `beat()` marks
    progress. The timeout must exceed the longest step-free phase (first tracing, the chief's saving).
    """

    def __init__(self, timeout, name="worker", on_timeout=None):
        self.timeout, self.name, self.on_timeout = float(timeout), name, on_timeout or _exit_with
        self._last, self._where = time.monotonic(), "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        if self.timeout > 0:
            self._thread.start()
        return self

    def beat(self, where=None):
        self._last = time.monotonic()
        if where is not None:
            self._where = where

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self._last > self.timeout:
                self.on_timeout(
                    f"{self.name}: no training progress for {self.timeout:g} s (after {self._where}); another "
                    "worker probably died or is unreachable. Restart all workers with the same command to resume"
                )
                return


def _exit_with(message):
    """Print the one-line error and end the process (a thread cannot interrupt a blocked collective)."""
    sys.stderr.write(f"effconv train: error: {message}\n")
    sys.stderr.flush()
    os._exit(1)
