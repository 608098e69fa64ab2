"""`effconv demo`: the whole workflow offline in about a minute, explained as it goes."""

import os
import time

from keras_effconv.cli.common import human_size
from keras_effconv.cli.common import positive_int

HELP = "offline end-to-end demo: synthetic data -> train -> evaluate -> TFLite export + parity"
DESCRIPTION = """Runs the whole workflow on a fresh machine without downloads:
  1. generates a small, deterministic image dataset (32x32 RGB; one coloured shape per image:
     circle, square, triangle, cross or ring; the label is the shape),
  2. trains a small model on it (EffResNet20 unless --model),
  3. evaluates it on a separate, freshly generated test set,
  4. exports it to TFLite (builtins only) and checks the TFLite outputs match Keras,
and prints where everything went. Takes about a minute on 2 CPU cores. Everything goes to
--output (default ./effconv-demo, replaced on each run).

example:
  effconv demo
  effconv demo --model DemoCNN --epochs 4 --output /tmp/effconv-demo"""


def add_arguments(parser):
    parser.add_argument("--model", default="EffResNet20", help="model to train (default: %(default)s)")
    parser.add_argument("--output", default="effconv-demo", metavar="DIR",
                        help="output folder (default: %(default)s in the current folder; git-ignored in the repository)")
    parser.add_argument("--epochs", type=positive_int, default=8, help="epochs (default: %(default)s)")
    parser.add_argument("--examples", type=positive_int, default=1000,
                        help="generated training images, 20%% held out for validation (default: %(default)s)")
    parser.add_argument("--test-examples", type=positive_int, default=500, help="generated test images (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="default: %(default)s")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def run(args):
    import numpy as np

    from keras_effconv import data as data_lib
    from keras_effconv import training
    from keras_effconv.export import LiteRTRunner
    from keras_effconv.export import convert
    from keras_effconv.export.saved_model import ParityError

    model_name = args.model
    output = os.path.abspath(args.output)
    classes = data_lib.SYNTHETIC_CLASSES
    print(f"effconv demo: {len(classes)}-class shapes dataset ({', '.join(classes)}), model {model_name}")
    print(f"Step 1/4  generate {args.examples} training images (+{args.test_examples} test images) and train")
    start = time.time()
    config = training.TrainConfig(
        model=model_name,
        data=f"synthetic:{args.examples}:0",
        output=os.path.join(output, "train"),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="sgd",
        lr=0.05,
        weight_decay=5e-4,
        warmup_epochs=1,
        val_split=0.2,
        augment="basic",
        overwrite=True,
        verbose=2 if args.quiet else "auto",
    )
    result = training.train(config)
    train_seconds = time.time() - start

    print("Step 2/4  evaluate the best checkpoint on a separate test set (new images, different seed)")
    test_source = data_lib.open_source(f"synthetic:{args.test_examples}:1")
    best = training.load_model(result.best_path)
    test_ds = data_lib.make_pipeline(test_source, batch_size=64, image_size=result.input_shape[:2], num_classes=len(classes))
    test = training.evaluate(best, test_ds)

    print("Step 3/4  export to TFLite (builtins only) and compare with Keras on the test images")
    images, labels = data_lib.take_images(test_source, args.test_examples, result.input_shape[:2])
    tflite_path = os.path.join(output, f"{model_name}.tflite")
    try:
        report = convert.export_model(best, tflite_path, format="tflite", parity_inputs=images[:64])
    except ParityError as error:
        print(f"TFLite parity check FAILED: {error}")
        return 1

    print("Step 4/4  run the TFLite model on the whole test set")
    with open(tflite_path, "rb") as f:
        runner = LiteRTRunner(f.read())
    tflite_pred = np.concatenate([runner(images[i : i + 64]).argmax(-1) for i in range(0, len(images), 64)])
    tflite_accuracy = float(np.mean(tflite_pred == labels))

    chance = 1.0 / len(classes)
    val_acc = result.metrics.get("val_accuracy")
    keras_size = os.path.getsize(result.best_path)
    lines = [
        "",
        "=" * 72,
        f"Demo finished in {time.time() - start:.0f} s (training {train_seconds:.0f} s)",
        f"  model            {model_name}, {best.count_params():,} parameters, input {result.input_shape}",
        f"  data             {result.num_train} training / {result.num_validation} validation / "
        f"{args.test_examples} test images, {len(classes)} classes",
        f"  accuracy         chance level is {chance:.0%} (guessing)",
        f"    validation     {val_acc:.1%}  (best epoch {result.best_epoch + 1} of {args.epochs})"
        if val_acc is not None
        else "    validation     n/a",
        f"    test (Keras)   {test['accuracy']:.1%}   loss {test['loss']:.3f}",
        f"    test (TFLite)  {tflite_accuracy:.1%}",
        f"  TFLite parity    max |Keras - TFLite| = {report.max_abs_diff:.2g} on {report.parity_samples} images "
        f"(limit {report.atol:g}), top-1 agreement {report.top1_agreement:.0%}",
        "  files",
        f"    {result.best_path}  ({human_size(keras_size)}, Keras model, best epoch)",
        f"    {tflite_path}  ({human_size(report.size_bytes)}, TFLite fp32)",
        f"    {os.path.join(result.output, 'log.csv')}  (per-epoch metrics)",
        f"    {os.path.join(result.output, 'tensorboard')}  (TensorBoard logs)",
        "  next",
        f"    effconv evaluate {result.best_path} --data synthetic:500:7",
        f"    effconv export {result.best_path} --format tflite --quantize int8 --calibration synthetic:200:3 "
        f"--output {os.path.join(output, model_name + '_int8.tflite')}",
        f"    effconv train --model {model_name} --data DATA --epochs 30 --output runs/mine",
        "=" * 72,
    ]
    print("\n".join(lines))
    if test["accuracy"] < 2 * chance:
        print(f"warning: test accuracy {test['accuracy']:.1%} is close to chance; try more --epochs")
    return 0
