#!/usr/bin/env python
"""Per-layer benchmark: reference path vs fast path vs the dense Conv2D it replaces, under the TF
runtime, XLA (jit_compile=True) and LiteRT (builtins only), at 56x56x256 and 14x14x1024, batch 8.

    python tools/bench_layers.py                     # all layers, both shapes, 10 runs (5 for reference paths)
    python tools/bench_layers.py --quick             # 3 runs
    python tools/bench_layers.py --layers Topological --shapes 56x56x256 --json layers.json

The logic lives in keras_effconv/benchmark/layers.py (CASES is the table of layer configs).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _shapes(text):
    shapes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"shapes must look like 56x56x256,14x14x1024; received {text!r}")
        shapes.append(tuple(int(p) for p in parts))
    return tuple(shapes)


def build_parser():
    parser = argparse.ArgumentParser(prog="bench_layers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 timed runs, 1 warm-up (a smoke run)")
    parser.add_argument("--layers", nargs="+", default=None, metavar="SUBSTRING",
                        help="keep only cases whose name contains one of these (case-insensitive)")
    parser.add_argument("--shapes", type=_shapes, default=None, help="HxWxC list (default 56x56x256,14x14x1024)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8)")
    parser.add_argument("--runtimes", default=None, help="subset of tf,xla,litert (default: all)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per cell (default 10; 3 with --quick)")
    parser.add_argument("--reference-runs", type=int, default=None,
                        help="timed runs of the (slow) reference paths (default 5; --runs with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="TF and LiteRT threads (default: all cores)")
    parser.add_argument("--target", type=float, default=None, help="speedup / MAC ratio target (default 0.6)")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write all numbers + machine info")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from keras_effconv.benchmark import layer_report
    from keras_effconv.benchmark import layers
    from keras_effconv.benchmark import report

    if args.list:
        for case in layers.CASES:
            print(f"{case.name:<36} {case.class_name}({layers._kwargs_text(case.kwargs(256))})  vs {case.dense_name()}")
        return 0
    config = layers.LayerBenchConfig(quick=args.quick)
    if args.quick:
        config.runs, config.warmup = 3, 1
    for name in ("batch", "runs", "reference_runs", "warmup", "threads", "target"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.quick and args.reference_runs is None:
        config.reference_runs = config.runs
    if args.shapes:
        config.shapes = args.shapes
    if args.runtimes:
        config.runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    if args.layers:
        config.cases = tuple(args.layers)
    try:
        config.validate()
    except ValueError as error:
        print(f"bench_layers: error: {error}", file=sys.stderr)
        return 2

    def log(message):
        print(message, file=sys.stderr, flush=True)

    result = layers.run_layer_benchmark(config, log=log)
    print(layer_report.format_layer_report(result), flush=True)
    if args.json:
        report.write_json(result, args.json)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
