"""Data-parallel scaling on this machine: 1 worker vs N local workers of one CPU core each.

    python recipes/imagenet/scaling.py throughput --workers 1 2 --output /tmp/scaling
    python recipes/imagenet/scaling.py allreduce --params 288997 6730000 --output /tmp/scaling

`throughput` runs `effconv train --strategy multiworker` (the custom loop; TF_CONFIG for N > 1) with
the same global batch on 1..N worker processes, each pinned to its own core with one TensorFlow
thread, and reads the steady-state samples/s from each run's run.json. `allreduce` times the ring
all-reduce of a float32 vector of the given parameter counts between 2 local workers (the gradient
traffic of one training step), so the step time can be split into compute and communication.
Results: one JSON line per measurement on stdout. The machine load (`os.getloadavg`) is recorded too.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)  # this checkout's keras_effconv, also in the worker processes


def _worker_env(index, ports):
    from keras_effconv.training import cluster

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if ports and len(ports) > 1:
        env["TF_CONFIG"] = cluster.local_tf_config(ports, index)
    return env


def run_workers(count, argv, timeout, log_prefix):
    """Run `python argv` as `count` workers pinned to cores 0..count-1; returns their exit codes."""
    from keras_effconv.training import cluster

    ports = cluster.free_ports(count) if count > 1 else None
    cores = sorted(os.sched_getaffinity(0))
    procs = []
    try:
        for i in range(count):
            core = cores[i % len(cores)]
            with open(f"{log_prefix}-w{i}.log", "w") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, env=_worker_env(i, ports),
                    cwd=REPO, preexec_fn=lambda core=core: os.sched_setaffinity(0, {core}),
                ))
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        return [proc.returncode for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def throughput(args):
    for count in args.workers:
        out = os.path.join(args.output, f"train-{count}w")
        argv = ["-m", "keras_effconv.cli.main", "train", "--model", args.model, "--data", f"synthetic:{args.examples}",
                "--val-split", "0", "--augment", "none", "--batch-size", str(args.batch_size),
                "--epochs", str(args.epochs), "--strategy", "multiworker", "--quiet", "--overwrite",
                "--worker-timeout", "300", "--output", out]
        load = os.getloadavg()[0]
        codes = run_workers(count, argv, args.timeout, out)
        if codes != [0] * count:
            print(json.dumps({"workers": count, "error": f"exit codes {codes}, see {out}-w*.log"}))
            continue
        with open(os.path.join(out, "run.json")) as f:
            run = json.load(f)
        rates = run["throughput"]["samples_per_second"][1:]  # the first epoch includes tracing
        cpu = run["throughput"]["samples_per_cpu_second"][1:]  # samples of all workers / chief CPU s
        print(json.dumps({"workers": count, "model": args.model, "global_batch": args.batch_size,
                          "samples_per_second": sorted(rates)[len(rates) // 2], "per_epoch": rates,
                          "samples_per_chief_cpu_second": sorted(cpu)[len(cpu) // 2],
                          "load_before": load, "load_after": os.getloadavg()[0]}), flush=True)


def allreduce_worker(args):
    """One worker of `allreduce`: times `repeats` SUM all-reduces of `params` float32 values."""
    import tensorflow as tf

    from keras_effconv.training import cluster

    strategy = cluster.make_multiworker_strategy(timeout_seconds=300)
    results = []
    for params in args.params:
        def replica_fn(params=params):
            context = tf.distribute.get_replica_context()
            value = tf.fill([params], tf.cast(context.replica_id_in_sync_group + 1, tf.float32))
            return context.all_reduce("sum", value)

        @tf.function
        def reduce(replica_fn=replica_fn):
            return strategy.run(replica_fn)

        reduce()  # warm-up: tracing and the collective group set-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            out = reduce()
        float(tf.reduce_sum(strategy.experimental_local_results(out)[0][:1]))
        seconds = (time.perf_counter() - start) / args.repeats
        results.append({"params": params, "bytes": 4 * params, "seconds": seconds,
                        "algorithm_gbit_per_s": 8 * 4 * params / seconds / 1e9})
    if cluster.is_chief(strategy):
        for result in results:
            print("RESULT " + json.dumps(result), flush=True)


def allreduce(args):
    prefix = os.path.join(args.output, "allreduce")
    argv = [os.path.abspath(__file__), "allreduce-worker", "--repeats", str(args.repeats),
            "--params", *map(str, args.params)]
    load = os.getloadavg()[0]
    codes = run_workers(2, argv, args.timeout, prefix)
    with open(f"{prefix}-w0.log") as f:
        for line in f:
            if line.startswith("RESULT "):
                print(json.dumps({**json.loads(line[7:]), "workers": 2, "load_before": load}), flush=True)
    return 0 if codes == [0, 0] else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    t.add_argument("--model", default="DemoCNN")
    t.add_argument("--batch-size", type=int, default=64, help="global batch (default: %(default)s)")
    t.add_argument("--examples", type=int, default=640)
    t.add_argument("--epochs", type=int, default=3)
    for p in (t, sub.add_parser("allreduce"), sub.add_parser("allreduce-worker")):
        p.add_argument("--output", default="/tmp/effconv-scaling")
        p.add_argument("--timeout", type=float, default=900)
        if p is not t:
            p.add_argument("--params", type=int, nargs="+", default=[288997, 6730000])
            p.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    return {"throughput": throughput, "allreduce": allreduce, "allreduce-worker": allreduce_worker}[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
