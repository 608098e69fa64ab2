"""`effconv evaluate`: loss and accuracy of a saved model (.keras or .tflite) on a data spec."""

import math
import os
import sys

from keras_effconv.cli.common import TTA_VIEWS
from keras_effconv.cli.common import add_data_arguments
from keras_effconv.cli.common import fraction_arg

HELP = "loss and accuracy of a .keras (or .tflite) model on a data spec"
DESCRIPTION = """Evaluate MODEL (a .keras file from `effconv train`, or a .tflite file from `effconv export`)
on DATA: prints the number of examples, loss (categorical cross-entropy) and top-1 accuracy.
Images are resized to the model's input size. To evaluate on the validation split carved by
`effconv train --val-split F`, pass the same --val-split F with --subset validation.

examples:
  effconv evaluate runs/r50/best.keras --data tfds:cifar10:test
  effconv evaluate runs/r50/best.keras --data ../shared/data/cifar10-train --val-split 0.1 --subset validation
  effconv evaluate runs/r20/best.keras --data tfds:cifar10:test --tta flip-translate
  effconv evaluate runs/r50/model_int8.tflite --data synthetic:500:1"""


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="path to a .keras or .tflite model")
    data = add_data_arguments(parser, required=True)
    data.set_defaults(batch_size=128)
    data.add_argument("--split", default="test", help="TFDS split when the spec has none (default: %(default)s)")
    data.add_argument("--val-split", type=fraction_arg, default=0.0, metavar="F",
                      help="carve the same deterministic validation split as `effconv train --val-split F`")
    data.add_argument("--subset", choices=("all", "training", "validation"), default="validation",
                      help="with --val-split: which part to evaluate (default: %(default)s)")
    parser.add_argument("--tta", choices=TTA_VIEWS, default="none",
                        help="also print the top-1 accuracy with test-time augmentation: flip (an image and its "
                        "mirror) or flip-translate (that too, shifted a pixel each way); .keras only "
                        "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _source(args, num_classes):
    from keras_effconv import data as data_lib

    source = data_lib.open_source(
        args.data, split=args.split, data_dir=args.data_dir, num_classes=num_classes, download=args.download,
        on_bad_image=args.on_bad_image,
    )
    if source.skipped:
        print(f"effconv evaluate: {data_lib.skipped_message(source.skipped)}", file=sys.stderr)
    if args.val_split:
        training_part, validation_part = data_lib.split_validation(source, args.val_split)
        source = validation_part if args.subset == "validation" else training_part if args.subset == "training" else source
    return source


def _evaluate_tflite(path, dataset):
    import numpy as np

    from keras_effconv.export import LiteRTRunner

    with open(path, "rb") as f:
        runner = LiteRTRunner(f.read())
    total_loss = correct = count = 0.0
    for images, labels in dataset:
        probs = runner(images.numpy())
        if not (np.all(probs >= 0) and np.allclose(probs.sum(-1), 1, atol=1e-2)):
            probs = np.exp(probs - probs.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
        labels = labels.numpy()
        total_loss += float(-np.sum(labels * np.log(np.clip(probs, 1e-7, 1.0))))
        correct += float(np.sum(probs.argmax(-1) == labels.argmax(-1)))
        count += len(labels)
    return {"loss": total_loss / count, "accuracy": correct / count}


def run(args):
    import json

    import numpy as np

    from keras_effconv import data as data_lib
    from keras_effconv import training

    if args.model.endswith(".tflite"):
        from keras_effconv.export import LiteRTRunner

        if args.tta != "none":
            raise ValueError(f"--tta {args.tta} needs a .keras model; received a .tflite file: {args.model!r}")
        if not os.path.exists(args.model):
            raise FileNotFoundError(f"model file not found: {args.model!r}")
        with open(args.model, "rb") as f:
            interpreter = LiteRTRunner(f.read()).interpreter
        input_shape = tuple(interpreter.get_input_details()[0]["shape"][1:])
        num_classes = int(np.prod(interpreter.get_output_details()[0]["shape"][1:]))
        model = None
    else:
        model = training.load_model(args.model)
        input_shape = tuple(model.input_shape[1:])
        num_classes = int(model.output_shape[-1])
    source = _source(args, num_classes)
    size = args.image_size or tuple(input_shape[:2])
    if tuple(size) != tuple(input_shape[:2]):
        raise ValueError(f"--image-size {size} differs from the model input size {tuple(input_shape[:2])}")
    dataset = data_lib.make_pipeline(
        source, batch_size=args.batch_size, image_size=size, num_classes=num_classes, cache=False, resize=True
    )
    if model is None:
        with data_lib.data_errors(source.files):
            metrics = _evaluate_tflite(args.model, dataset)
    else:
        metrics = training.evaluate(model, dataset, verbose=0, files=source.files)
        if args.tta != "none":
            metrics[f"accuracy_tta_{args.tta}"] = training.evaluate_tta(model, dataset, args.tta, files=source.files)
    metrics = {"examples": source.num_examples, **metrics}
    if args.json:
        print(json.dumps(metrics))
        return 0
    chance = 1.0 / num_classes
    print(f"Evaluated {args.model} on {source.description}")
    print(f"  examples: {metrics['examples']}")
    print(f"  loss:     {metrics['loss']:.4f}")
    print(f"  accuracy: {metrics['accuracy']:.2%}  (chance: {chance:.2%})")
    if args.tta != "none":
        print(f"  accuracy with {args.tta} TTA: {metrics[f'accuracy_tta_{args.tta}']:.2%}")
    return 0 if math.isfinite(metrics["loss"]) else 1
