"""`effconv profile`: where a model's training step or inference call spends its time, per op category.

`keras_effconv.cli.main` registers this subcommand with `add_arguments(parser)` and `run(args)`.
"""

import json
import os
import sys

HELP = "per-op-category time of a training step / inference call (TF profiler); see `effconv profile --help`"
DESCRIPTION = (
    "Capture a few warm training steps (compiled train_on_batch) or inference calls (tf.function, TF "
    "runtime, no XLA) with the TF profiler and split the step wall time into op categories (depthwise, "
    "1x1 dense / grouped conv, BatchNorm, add/ReLU, transposed conv, transposes, optimizer ...) plus the "
    "framework overhead between ops. Run it on a quiet machine: other processes show up as overhead.\n\n"
    "examples:\n"
    "  effconv profile --model EffResNet20 --mode train --batch 128 --image-size 32 --compare ResNet20\n"
    "  effconv profile --model EffResNet50 --mode infer --batch 16 --image-size 224 --json eff50.json"
)
MODES = ("train", "infer")  # = keras_effconv.benchmark.profile.MODES (spelt out: --help imports no TF)


def add_arguments(parser):
    """Add the `profile` options to an argparse parser (or subparser)."""
    from keras_effconv.cli.common import positive_int

    parser.add_argument("--model", required=True, metavar="NAME", help="registered model (see `effconv summary --list`)")
    parser.add_argument("--mode", choices=MODES, default="train", help="train step or inference call (default: %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=16, metavar="N", help="batch size (default: %(default)s)")
    parser.add_argument("--image-size", type=positive_int, default=224, metavar="N",
                        help="square input size (default: %(default)s)")
    parser.add_argument("--classes", type=positive_int, default=10, metavar="N", help="classifier outputs (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=5, metavar="N", help="profiled steps (default: %(default)s)")
    parser.add_argument("--warmup", type=positive_int, default=3, metavar="N",
                        help="untimed steps before the capture (default: %(default)s)")
    parser.add_argument("--optimizer", default="sgd", metavar="NAME", help="Keras optimizer for --mode train (default: %(default)s)")
    parser.add_argument("--compare", metavar="NAME", default=None, help="profile this model too and print both side by side")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=None,
                        help="TF intra/inter-op threads (default: all cores)")
    parser.add_argument("--logdir", metavar="DIR", default=None,
                        help="keep the raw trace here (one sub-dir per model; TensorBoard's profile plugin opens it)")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write the numbers here")
    return parser


def run(args):
    """Profile --model (and --compare); print the markdown tables; write --json. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # only effective if TF is not imported yet
    from keras_effconv.benchmark import profile
    from keras_effconv.benchmark import timing

    if args.threads:
        timing.configure_threads(args.threads)
    warning = timing.busy_warning()
    if warning:
        print(warning, file=sys.stderr)
    results = []
    for name in [args.model] + ([args.compare] if args.compare else []):
        print(f"profiling {name} ({args.mode}, batch {args.batch}, {args.image_size}px) ...", file=sys.stderr, flush=True)
        logdir = os.path.join(args.logdir, name) if args.logdir else None
        results.append(profile.profile_model(
            name, mode=args.mode, batch=args.batch, image_size=args.image_size, steps=args.steps,
            warmup=args.warmup, classes=args.classes, optimizer=args.optimizer, logdir=logdir,
        ))
    print(profile.format_profile(*results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "machine": timing.machine_info(args.threads)}, f, indent=2)
        print(f"JSON written to {args.json}")
    return 0
