"""Argument helpers shared by the `effconv` subcommands."""

import argparse


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


def fraction_arg(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


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
    return group


def human_size(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
