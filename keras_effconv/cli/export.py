"""`effconv export`: SavedModel or TFLite (fp32 / float16 / int8) with a parity check."""

from keras_effconv.cli.common import DATA_HELP
from keras_effconv.cli.common import non_negative_float
from keras_effconv.cli.common import positive_int

HELP = "export a .keras model to SavedModel or TFLite (builtins only) and check parity"
DESCRIPTION = """Export MODEL.keras to a SavedModel folder or a TFLite flatbuffer (TFLITE_BUILTINS only: no
Flex or custom ops), then compare the exported model with the Keras model:
  fp32 (SavedModel, TFLite): max abs output difference must be <= --atol (default 1e-4), else
                             exit status 1 and nothing is written;
  float16 / int8 TFLite:     max abs difference and top-1 agreement are printed (not enforced).
Parity inputs: the first --parity-samples images of --calibration (or --data), else random pixels.
The output is written to a temporary name and renamed, so a failure leaves no partial file.

examples:
  effconv export runs/r50/best.keras --format tflite --output r50.tflite
  effconv export runs/r50/best.keras --format tflite --quantize int8 \\
      --calibration ../shared/data/cifar10-train --output r50_int8.tflite
  effconv export runs/r50/best.keras --format saved_model --output r50_saved_model"""


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras", help="a .keras model (e.g. from `effconv train`)")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="tflite", help="default: %(default)s")
    parser.add_argument("--quantize", choices=("float16", "int8"), help="TFLite post-training quantization")
    parser.add_argument("--calibration", metavar="SPEC", help="int8 calibration data. " + DATA_HELP)
    parser.add_argument("--calibration-samples", type=positive_int, default=200,
                        help="number of calibration images (default: %(default)s)")
    parser.add_argument("--data", metavar="SPEC", help="parity-check images when there is no --calibration")
    parser.add_argument("--data-dir", metavar="DIR", help="TFDS data_dir")
    parser.add_argument("--parity-samples", type=positive_int, default=32,
                        help="images for the parity check (default: %(default)s)")
    parser.add_argument("--atol", type=non_negative_float, default=1e-4, help="fp32 max abs difference allowed (default: %(default)s)")
    parser.add_argument("--output", required=True, metavar="PATH", help="output .tflite file or SavedModel folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty SavedModel folder")


def run(args):
    from keras_effconv import data as data_lib
    from keras_effconv import training
    from keras_effconv.export import convert
    from keras_effconv.export.saved_model import ParityError

    if args.quantize and args.format != "tflite":
        raise ValueError(f"--quantize {args.quantize} needs --format tflite")
    if args.quantize == "int8" and not args.calibration:
        raise ValueError("--quantize int8 needs --calibration DATA (representative images)")
    convert.check_output(args.output, args.format, args.overwrite)  # before the conversion, not after
    model = training.load_model(args.model)
    size = tuple(model.input_shape[1:3])
    calibration = parity = None
    if args.calibration:
        calibration, _ = data_lib.take_images(args.calibration, args.calibration_samples, size, data_dir=args.data_dir)
        parity = calibration[: max(args.parity_samples, 1)] if not args.quantize else calibration
    elif args.data:
        parity, _ = data_lib.take_images(args.data, args.parity_samples, size, data_dir=args.data_dir)
    if parity is None:
        parity = convert.random_inputs(model, args.parity_samples)
    try:
        report = convert.export_model(
            model, args.output, format=args.format, quantize=args.quantize, calibration=calibration,
            parity_inputs=parity, atol=args.atol, overwrite=args.overwrite,
        )
    except ParityError as error:
        print(f"effconv export: parity check FAILED: {error}")
        return 1
    print("\n".join(report.lines()))
    return 0
