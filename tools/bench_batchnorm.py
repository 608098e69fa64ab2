#!/usr/bin/env python
"""Time a BatchNormalization training step: keras.layers.BatchNormalization vs FusedBatchNormalization.

    python tools/bench_batchnorm.py                      # 128x32x32x40, TF runtime and XLA
    python tools/bench_batchnorm.py --shape 8x56x56x256 --runs 30 --runtimes tf

Each step is the forward pass with training=True (moving statistics updated) and the gradients with
respect to the input, gamma and beta, inside one tf.function (jit_compile=True for "xla"). Prints the
median of the warm runs (the two layers interleaved run by run) and keras / fused (> 1: fused is
faster). The XLA row decides whether the fused op is worth keeping under jit_compile (see
keras_effconv/layers/batch_norm.py). Run it on a quiet machine: the ratio, not the ms, is the result.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _shape(text):
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"shape must look like 128x32x32x40; received {text!r}")
    return tuple(int(p) for p in parts)


def training_step(layer, jit_compile):
    """tf.function: forward (training=True) + d sum(y * cotangent) / d [x, gamma, beta]."""
    import tensorflow as tf

    def step(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * cotangent)
        return tape.gradient(loss, [x, layer.gamma, layer.beta])

    return tf.function(step, jit_compile=jit_compile)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench_batchnorm", description=__doc__.splitlines()[1])
    parser.add_argument("--shape", type=_shape, default=(128, 32, 32, 40), help="NxHxWxC (default 128x32x32x40)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per layer (median; default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runtimes", default="tf,xla", help="subset of tf,xla (default both)")
    args = parser.parse_args(argv)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if not runtimes or set(runtimes) - {"tf", "xla"}:
        parser.error(f"--runtimes must be a subset of tf,xla; received {args.runtimes!r}")

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_effconv.benchmark import timing
    from keras_effconv.layers import FusedBatchNormalization

    warning = timing.busy_warning()
    if warning:
        print(warning, file=sys.stderr)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(args.shape), tf.float32)
    cotangent = tf.constant(rng.standard_normal(args.shape), tf.float32)
    shape = "x".join(map(str, args.shape))
    print(f"BatchNormalization training step (fwd + bwd) at {shape}, median of {args.runs} warm runs")
    print(f"{'runtime':>8} {'keras ms':>9} {'fused ms':>9} {'keras/fused':>12} | {'cpu ms: keras':>13} {'fused':>7} {'ratio':>6}")
    for runtime in runtimes:
        reference, fused = keras.layers.BatchNormalization(), FusedBatchNormalization()
        reference.build(args.shape), fused.build(args.shape)
        jit = runtime == "xla"
        steps = [training_step(layer, jit) for layer in (reference, fused)]
        for got, want in zip(steps[1](x, cotangent), steps[0](x, cotangent)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(want).max())))
        path = fused.resolved_implementation
        wall_ref, wall_fused, cpu_ref, cpu_fused = timing.interleaved_median_ms(
            steps[0], (x, cotangent), steps[1], (x, cotangent), max(1, args.runs), max(1, args.warmup))
        print(f"{runtime:>8} {wall_ref:9.2f} {wall_fused:9.2f} {wall_ref / wall_fused:11.2f}x"
              f" | {cpu_ref:13.2f} {cpu_fused:7.2f} {cpu_ref / cpu_fused:5.2f}x  (fused path: {path})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
