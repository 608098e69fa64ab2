"""`effconv bench`: Eff models vs their keras.applications twins (MACs, params, latency, training).

`keras_effconv.cli.main` registers this subcommand with `add_arguments(parser)` and `run(args)`.
"""

import os
import sys

HELP = "benchmark layers/models (Keras and LiteRT latency); see `effconv bench --help`"
DESCRIPTION = (
    "Benchmark each Eff model against its keras.applications twin (EffResNet50/ResNet50, "
    "EffResNet101/ResNet101, EffVGG16/VGG16) plus MobileNetV2 and EfficientNetB0: MACs, params, "
    "latency (median and p90) under the TF runtime, XLA and LiteRT, and a training step.\n\n"
    "example:\n  effconv bench --quick --json bench.json"
)


def _int_list(text):
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"expected comma-separated integers; received {text!r}") from None
    return values


def add_arguments(parser):
    """Add the `bench` options to an argparse parser (or subparser)."""
    from keras_effconv.cli.common import positive_int

    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 3 min on 2 idle cores): batch 1 only, 3 runs, train step b16@64 "
                             "for the Eff models and their twins only")
    parser.add_argument("--models", nargs="+", default=None, metavar="NAME",
                        help="models to run (default: the 3 Eff/twin pairs + MobileNetV2, EfficientNetB0); "
                             "the twin of each Eff model is added unless --no-twins")
    parser.add_argument("--no-twins", action="store_true", help="do not add the twins of the requested Eff models")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write all numbers + machine info here")
    parser.add_argument("--plot", metavar="OUT.png", default=None,
                        help="latency vs MACs plot (needs the `plot` extra: pip install -e '.[plot]')")
    parser.add_argument("--image-size", type=positive_int, metavar="N", default=224, help="inference input size (default 224)")
    parser.add_argument("--train-image-size", type=positive_int, metavar="N", default=None,
                        help="training-step input size (default 128; 64 with --quick)")
    parser.add_argument("--train-batch", type=positive_int, metavar="N", default=None, help="training batch (default 32; 16 with --quick)")
    parser.add_argument("--train-jit", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--batches", default=None, metavar="B1,B2",
                        help="inference batch sizes for TF/XLA, comma-separated (default 1,16; 1 with --quick)")
    parser.add_argument("--litert-batches", default=None, metavar="B1,B2",
                        help="batch sizes for LiteRT (default: same as --batches)")
    parser.add_argument("--runtimes", default=None, metavar="LIST",
                        help="subset of tf,xla,litert,train (default: all)")
    parser.add_argument("--runs", type=positive_int, metavar="N", default=None, help="timed runs per cell (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=positive_int, metavar="N", default=None, help="untimed calls first (default 2; 1 with --quick)")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=None,
                        help="TF intra/inter-op threads and LiteRT threads (default: all cores)")
    return parser


def config_from_args(args):
    from keras_effconv.benchmark.models import DEFAULT_MODELS
    from keras_effconv.benchmark.models import RUNTIMES
    from keras_effconv.benchmark.models import ModelBenchConfig

    overrides = {"image_size": args.image_size}
    if getattr(args, "models", None):
        overrides["models"] = tuple(args.models)
    else:
        overrides["models"] = DEFAULT_MODELS
    overrides["add_twins"] = not getattr(args, "no_twins", False)
    if getattr(args, "batches", None):
        overrides["batches"] = _int_list(args.batches)
        overrides["litert_batches"] = overrides["batches"]
    if getattr(args, "litert_batches", None):
        overrides["litert_batches"] = _int_list(args.litert_batches)
    if getattr(args, "runtimes", None):
        overrides["runtimes"] = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    else:
        overrides["runtimes"] = RUNTIMES
    for name in ("train_image_size", "train_batch", "runs", "warmup", "threads"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "runs", None) is not None:
        overrides["train_runs"] = args.runs
    overrides["train_jit"] = bool(getattr(args, "train_jit", False))
    factory = ModelBenchConfig.quick_run if getattr(args, "quick", False) else ModelBenchConfig
    return factory(**overrides).validate()


def run(args):
    """Run the benchmark; print the tables; write --json / --plot. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # only effective if TF is not imported yet
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"effconv bench: error: {error}", file=sys.stderr)
        return 2

    from keras_effconv.benchmark import model_report
    from keras_effconv.benchmark import models
    from keras_effconv.benchmark import report

    def log(message):
        print(message, file=sys.stderr, flush=True)

    result = models.run_model_benchmark(config, log=log)  # ValueError (unknown --models): exit 2 in main
    print(model_report.format_model_report(result), flush=True)
    if getattr(args, "json", None):
        report.write_json(result, args.json)
        print(f"JSON written to {args.json}")
    if getattr(args, "plot", None):
        if model_report.plot_models(result, args.plot) is None:
            print(report.PLOT_HINT)
        else:
            print(f"Plot written to {args.plot}")
    ok = [e for e in result["results"] if e["status"] == "ok"]
    return 0 if ok or not result["results"] else 1
