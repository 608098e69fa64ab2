"""Argument helpers shared by the `effconv` subcommands."""

import argparse
import math


def shape_arg(text):
    """'224,224,3' or '224x224x3' -> (224, 224, 3)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 224,224,3; got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 224,224,3; got {text!r}")
    return values


def image_size_arg(text):
    values = shape_arg(text)
    if len(values) == 1:
        values = values * 2
    if len(values) == 3 and values[2] == 3:
        values = values[:2]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected H,W (e.g. 32,32); got {text!r}")
    return values


def number_arg(kind=float, low=None, high=None, low_open=False, high_open=False):
    """An argparse `type` parsing a finite `kind` number within [low, high] (open ends optional)."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    expected = f"{'an integer' if kind is int else 'a number'}" + (f" {' and '.join(bounds)}" if bounds else "")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if not math.isfinite(value) or (
            low is not None and (value <= low if low_open else value < low)
        ) or (high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


fraction_arg = number_arg(float, 0.0, 1.0, high_open=True)  # [0, 1)
positive_int = number_arg(int, 0, low_open=True)
positive_float = number_arg(float, 0.0, low_open=True)
non_negative_float = number_arg(float, 0.0)
seed_arg = number_arg(int, 0, 2**32 - 1)


# training.tta.VIEWS, spelt out so that building the parsers does not import the training package
TTA_VIEWS = ("none", "flip", "flip-translate")

DATA_HELP = (
    "data spec: tfds:NAME[:SPLIT] (TensorFlow Datasets, e.g. tfds:cifar10), a folder of class "
    "sub-folders of images, a TFRecord file/glob/folder (tf.train.Example with `image` JPEG/PNG bytes "
    "and int64 `label`), or synthetic[:N[:SEED]] (generated shapes, offline)"
)


def add_data_arguments(parser, required=True, default=None):
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, default=default, metavar="SPEC", help=DATA_HELP)
    group.add_argument("--data-dir", metavar="DIR", help="TFDS data_dir (where prepared tfds datasets live)")
    group.add_argument("--download", action="store_true", help="let TFDS download and prepare the dataset (needs internet)")
    group.add_argument(
        "--image-size",
        type=image_size_arg,
        metavar="H,W",
        help="resize (center-crop to the aspect ratio, then resize) images to H,W; default: the data's own size",
    )
    group.add_argument("--batch-size", type=positive_int, default=64, help="global batch size (default: %(default)s)")
    group.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                       help="undecodable images in a folder or TFRecord: error (name them and stop before any work) "
                       "or skip (leave them out and say how many) (default: %(default)s)")
    return group


def human_size(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
