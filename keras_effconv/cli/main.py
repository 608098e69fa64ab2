"""`effconv`: the console script (pyproject: effconv = keras_effconv.cli.main:main).

Subcommands live in their own modules, each with HELP, DESCRIPTION, add_arguments(parser) and
run(args) -> exit status.
"""

import argparse
import importlib
import sys

COMMANDS = (
    ("demo", "keras_effconv.cli.demo"),
    ("train", "keras_effconv.cli.train"),
    ("evaluate", "keras_effconv.cli.evaluate"),
    ("export", "keras_effconv.cli.export"),
    ("summary", "keras_effconv.cli.summary"),
    ("bench", "keras_effconv.cli.bench"),
    ("profile", "keras_effconv.cli.profile"),
    ("presets", "keras_effconv.cli.presets"),
)
VERBOSE_HELP = "show TensorFlow's own log lines and warnings (hidden by default)"

DESCRIPTION = """Efficient convolutional layers and models for Keras 3 / TensorFlow.

Start with `effconv demo` (offline, about a minute): it generates a small image dataset, trains a
model, evaluates it and exports it to TFLite with a parity check.
Exit status: 0 success, 1 check failed (e.g. export parity), 2 bad input or usage."""

EPILOG = """examples:
  effconv demo
  effconv summary EffResNet50 --input-shape 224,224,3
  effconv train --model EffResNet20 --data ../shared/data/cifar10-train --epochs 30 --output runs/eff20
  effconv evaluate runs/eff20/best.keras --data tfds:cifar10:test
  effconv export runs/eff20/best.keras --format tflite --output eff20.tflite
  effconv profile --model EffResNet20 --mode train --batch 128 --image-size 32
Run `effconv COMMAND --help` for the options of each command."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def build_parser():
    from keras_effconv import __version__

    parser = argparse.ArgumentParser(
        prog="effconv", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"keras_effconv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION, formatter_class=_Formatter)
        module.add_arguments(sub)
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Run `effconv` with `argv` (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return exit_.code if isinstance(exit_.code, int) else 2
    if not args.verbose:
        from keras_effconv import _quiet

        _quiet.quiet_python_logging()
    from keras_effconv.data import DataError

    try:
        return int(args._run(args) or 0)
    except (DataError, ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"effconv {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
