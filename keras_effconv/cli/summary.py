"""`effconv summary`: per-layer MACs and parameters of a model."""

import os

from keras_effconv.cli.common import positive_int
from keras_effconv.cli.common import shape_arg

HELP = "per-layer MACs and parameters of a registered model (or a .keras file)"
DESCRIPTION = """Print a per-layer table of multiply-accumulates (for one example) and parameters,
with totals, using keras_effconv.analysis.profile. MODEL is a registered name (see
`effconv summary --list`) or a saved .keras file.

example:
  effconv summary ResNet50 --input-shape 224,224,3 --classes 1000
  effconv summary runs/cifar/best.keras"""


def add_arguments(parser):
    parser.add_argument("model", nargs="?", metavar="MODEL", help="registered model name or path to a .keras file")
    parser.add_argument(
        "--input-shape", type=shape_arg, default=(224, 224, 3), metavar="H,W,C", help="input shape (default: 224,224,3)"
    )
    parser.add_argument("--classes", type=positive_int, default=1000, help="number of classes (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the registered model names and exit")


def build(args):
    from keras_effconv import training

    if args.model.endswith(".keras") or os.path.isfile(args.model):
        return training.load_model(args.model)
    if args.model not in training.model_names():
        raise ValueError(f"Unknown model name={args.model!r}; available: {', '.join(training.model_names())}")
    if len(args.input_shape) != 3:
        raise ValueError(f"--input-shape must be H,W,C; received {','.join(map(str, args.input_shape))}")
    kwargs = dict(weights=None, input_shape=tuple(args.input_shape), classes=args.classes)
    from keras_effconv.applications import registry

    if args.model in registry.available_models():
        return registry.get_model(args.model, **kwargs)
    return training.LOCAL_MODELS[args.model](**kwargs)


def run(args):
    from keras_effconv import training

    if args.list:
        print("\n".join(training.model_names()))
        return 0
    if not args.model:
        raise ValueError("MODEL is required (a registered name or a .keras file); see `effconv summary --list`")
    from keras_effconv.analysis import profile

    print(profile(build(args)))
    return 0
