"""Benchmark the keras_effconv C++ ops against the composite TF paths (CPU, TF runtime).

    python tools/bench_custom_ops.py [--runs 15] [--batch 8] [--size 56]

- FusedSICStep vs the composite path (tf.nn.depthwise_conv2d + 1x1 tf.nn.conv2d + scale + bias +
  residual add + relu), both inside tf.function, at 56x56x{64,128,256}, batch 8, k=3.
- TopologicalProjection vs a dense 1x1 tf.nn.conv2d at connection ratios 1/2, 1/4, 1/8 (56x56x256,
  batch 8).

Prints the median of >= 10 warm runs (the two paths interleaved run by run) in ms and the speedup
(composite / custom; > 1 means the custom op is faster), in wall time and in process CPU time.
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

from keras_effconv.benchmark import timing
from keras_effconv.ops import custom


def bench_fused(batch, size, channels, k, runs, warmup, rng):
    x = tf.constant(rng.standard_normal((batch, size, size, channels)), tf.float32)
    dw = tf.constant(rng.standard_normal((k, k, channels)) / k, tf.float32)
    proj = tf.constant(rng.standard_normal((channels, channels)) / np.sqrt(channels), tf.float32)
    scale = tf.constant(rng.uniform(0.5, 1.5, channels), tf.float32)
    bias = tf.constant(rng.standard_normal(channels) * 0.1, tf.float32)
    args = (x, dw, proj, scale, bias)
    composite = tf.function(custom.fused_sic_step_reference)
    fused = tf.function(custom.fused_sic_step)
    np.testing.assert_allclose(fused(*args), composite(*args), atol=2e-4, rtol=2e-4)
    return timing.interleaved_median_ms(composite, args, fused, args, runs, warmup)


def bench_topo(batch, size, channels, ratio, runs, warmup, rng):
    window = channels // ratio
    x = tf.constant(rng.standard_normal((batch, size, size, channels)), tf.float32)
    index = np.stack([rng.permutation(channels)[:window] for _ in range(channels)], axis=1)
    kernel = tf.constant(rng.standard_normal((window, channels)) / np.sqrt(window), tf.float32)
    index = tf.constant(index.astype("int32"))
    dense_kernel = custom.topological_dense_kernel(kernel, index, channels)[tf.newaxis, tf.newaxis]
    dense = tf.function(lambda x, w: tf.nn.conv2d(x, w, strides=1, padding="VALID"))
    topo = tf.function(custom.topological_projection)
    np.testing.assert_allclose(topo(x, kernel, index), dense(x, dense_kernel), atol=2e-4, rtol=2e-4)
    return timing.interleaved_median_ms(dense, (x, dense_kernel), topo, (x, kernel, index), runs, warmup)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per case (median; >= 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--ratios", type=int, nargs="+", default=[2, 4, 8],
                        help="connection ratios 1/r for the topological projection")
    parser.add_argument("--skip-fused", action="store_true")
    parser.add_argument("--skip-topo", action="store_true")
    args = parser.parse_args(argv)
    runs = max(10, args.runs)

    try:
        custom.load_custom_ops()
    except custom.CustomOpsError as exc:
        print(f"custom ops unavailable: {exc}", file=sys.stderr)
        return 1
    info = custom.build_info()
    print(f"TF {tf.__version__}; library {info['path']}; {info.get('cuda_reason', '')}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs (a shared machine skews wall times)")
    print(f"median of {runs} warm runs, CPU threads: inter={tf.config.threading.get_inter_op_parallelism_threads()} "
          f"intra={tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)")
    rng = np.random.default_rng(0)

    if not args.skip_fused:
        print(f"\nFusedSICStep (k={args.k}) vs composite depthwise + 1x1 conv + scale/bias + add + relu")
        print(f"{'shape':>22} {'composite ms':>13} {'fused ms':>9} {'speedup':>8}"
              f" | {'cpu ms: composite':>17} {'fused':>7} {'ratio':>6}")
        for c in args.channels:
            t_ref, t_op, c_ref, c_op = bench_fused(args.batch, args.size, c, args.k, runs,
                                                   args.warmup, rng)
            shape = f"{args.batch}x{args.size}x{args.size}x{c}"
            print(f"{shape:>22} {t_ref:13.2f} {t_op:9.2f} {t_ref / t_op:7.2f}x"
                  f" | {c_ref:17.2f} {c_op:7.2f} {c_ref / c_op:5.2f}x", flush=True)

    if not args.skip_topo:
        c = 256
        print(f"\nTopologicalProjection vs dense 1x1 tf.nn.conv2d ({args.batch}x{args.size}x{args.size}x{c})")
        print(f"{'connections':>22} {'dense ms':>13} {'topo ms':>9} {'speedup':>8}"
              f" | {'cpu ms: dense':>17} {'topo':>7} {'ratio':>6}")
        for r in args.ratios:
            t_ref, t_op, c_ref, c_op = bench_topo(args.batch, args.size, c, r, runs, args.warmup, rng)
            label = f"1/{r} ({c // r} of {c})"
            print(f"{label:>22} {t_ref:13.2f} {t_op:9.2f} {t_ref / t_op:7.2f}x"
                  f" | {c_ref:17.2f} {c_op:7.2f} {c_ref / c_op:5.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
