"""`effconv bench`: Eff models vs their keras.applications twins (MACs, params, latency, training).

`keras_effconv.cli.main` registers this subcommand with `add_arguments(parser)` and `run(args)`.
"""

import os
import sys

HELP = "benchmark layers/models (Keras and LiteRT latency); see `effconv bench --help`"
DESCRIPTION = (
    "Benchmark each Eff model against its twin (the model the registry pairs it with) plus reference "
    "models: MACs, params, latency (median and p90) under the TF runtime, XLA and LiteRT, and a training "
    "step. An Eff model and its twin are timed in turn over several rounds. --suite picks the models and "
    "defaults (imagenet, or cifar: the CIFAR pairs and MobileNetV2CIFAR); CIFAR-size models always run "
    "at 32x32.\n\n"
    "examples:\n  effconv bench --quick --json bench.json\n  effconv bench --suite cifar --json bench_cifar.json"
)


def _int_list(text):
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"expected comma-separated integers; received {text!r}") from None
    return values


def add_arguments(parser):
    """Add the `bench` options to an argparse parser (or subparser)."""
    from keras_effconv.benchmark.model_plan import SUITES
    from keras_effconv.cli.common import positive_int

    parser.add_argument("--suite", choices=tuple(SUITES), default="imagenet",
                        help="models and defaults: " + "; ".join(f"{k}: {v.description}" for k, v in SUITES.items()))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 3 min on 2 idle cores): batch 1 only, 3 runs, train step b16 "
                             "(at 64 for ImageNet-size models) for the Eff models and their twins only")
    parser.add_argument("--models", nargs="+", default=None, metavar="NAME",
                        help="models to run instead of the suite's (the suite's defaults still apply); "
                             "the twin of each Eff model is added unless --no-twins")
    parser.add_argument("--no-twins", action="store_true", help="do not add the twins of the requested Eff models")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write all numbers + machine info here")
    parser.add_argument("--plot", metavar="OUT.png", default=None,
                        help="latency vs MACs plot (needs the `plot` extra: pip install -e '.[plot]')")
    parser.add_argument("--image-size", type=positive_int, metavar="N", default=None,
                        help="inference input size of the ImageNet-size models (default 224)")
    parser.add_argument("--train-image-size", type=positive_int, metavar="N", default=None,
                        help="training-step input size of the ImageNet-size models (default 128; 64 with --quick)")
    parser.add_argument("--train-batch", type=positive_int, metavar="N", default=None,
                        help="training batch (default 32, cifar 128; 16 with --quick)")
    parser.add_argument("--train-jit", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--batches", default=None, metavar="B1,B2",
                        help="inference batch sizes for TF/XLA, comma-separated (default 1,16, cifar 1,256; 1 with --quick)")
    parser.add_argument("--litert-batches", default=None, metavar="B1,B2",
                        help="batch sizes for LiteRT (default: same as --batches; cifar 1)")
    parser.add_argument("--runtimes", default=None, metavar="LIST",
                        help="subset of tf,xla,litert,train (default: all; cifar tf,litert,train)")
    parser.add_argument("--runs", type=positive_int, metavar="N", default=None, help="timed runs per cell (default 10; 3 with --quick)")
    parser.add_argument("--rounds", type=positive_int, metavar="N", default=None,
                        help="rounds of timing each Eff model and its twin in turn, the runs spread over them "
                             "(default 5; 3 with --quick)")
    parser.add_argument("--warmup", type=positive_int, metavar="N", default=None, help="untimed calls first (default 2; 1 with --quick)")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=None,
                        help="TF intra/inter-op threads and LiteRT threads (default: all cores)")
    return parser


def config_from_args(args):
    """The ModelBenchConfig of the parsed arguments: the suite's defaults, --quick's, then the options given."""
    from keras_effconv.benchmark.model_plan import ModelBenchConfig

    overrides = {}
    if getattr(args, "models", None):
        overrides["models"] = tuple(args.models)
    overrides["add_twins"] = not getattr(args, "no_twins", False)
    if getattr(args, "batches", None):
        overrides["batches"] = _int_list(args.batches)
        overrides["litert_batches"] = overrides["batches"]
    if getattr(args, "litert_batches", None):
        overrides["litert_batches"] = _int_list(args.litert_batches)
    if getattr(args, "runtimes", None):
        overrides["runtimes"] = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    for name in ("image_size", "train_image_size", "train_batch", "runs", "rounds", "warmup", "threads"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "runs", None) is not None:
        overrides["train_runs"] = args.runs
    overrides["train_jit"] = bool(getattr(args, "train_jit", False))
    suite = getattr(args, "suite", None) or "imagenet"
    return ModelBenchConfig.for_suite(suite, quick=bool(getattr(args, "quick", False)), **overrides).validate()


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
