"""Fine-tune a preset on a small labelled set, against the same model trained from scratch.

Transfer: the backbone from `--weights` (a preset name such as "imagenette", a preset directory from
`effconv train --save-preset`, a `.weights.h5` path or URL) is frozen while a new head trains, then
unfrozen with BatchNorm kept in inference mode (its statistics stay those of pre-training). Scratch:
the same architecture from random weights, trained end to end for the same number of steps.
Both see the same images; models take raw RGB pixels in [0, 255] (they normalise inside).

    python recipes/fine_tune.py --model EffResNet50 --weights imagenette \\
        --data ../shared/data/cifar10-train --train-examples 5000 --val-examples 1000 \\
        --head-epochs 3 --fine-epochs 7 --json finetune.json

The small set is `--train-examples` images spread evenly over the training part of `--data` (close to
stratified for class-sorted folders), validated on `--val-examples` images carved out before.
Images are resized to the preset's input size (or `--image-size`). Without --data it runs on the
embedded synthetic dataset (offline smoke run).
"""

import argparse
import json
import types

import keras

from keras_effconv import applications
from keras_effconv import data as data_lib


def build(model_name, weights, image_size, num_classes, dropout=0.2):
    """Raw pixels -> backbone (normalises inside, pooled) -> dropout -> dense head."""
    backbone = applications.get_model(
        model_name, include_top=False, weights=weights, input_shape=(*image_size, 3), pooling="avg"
    )
    inputs = keras.Input((*image_size, 3))
    x = backbone(inputs)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=f"{model_name.lower()}_finetuned"), backbone


def freeze_batchnorm(model):
    """Keep every BatchNormalization (also those nested in SIConv2D/SpatialBottleneck) in inference
    mode. In Keras 3 a BN layer with trainable=False uses its moving statistics; `training=False` at
    the backbone's call would be overridden by fit's training=True."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _compile(model, lr):
    model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])


def fine_tune(model, backbone, data, head_epochs, fine_epochs, head_lr=1e-3, fine_lr=1e-4, verbose=2):
    """Head only with the backbone frozen, then everything but BatchNorm. Returns the fine-tuning history."""
    backbone.trainable = False
    _compile(model, head_lr)
    model.fit(data.train, validation_data=data.validation, epochs=head_epochs, verbose=verbose)
    backbone.trainable = True
    freeze_batchnorm(backbone)  # recompile below so both changes take effect
    _compile(model, fine_lr)
    return model.fit(data.train, validation_data=data.validation, initial_epoch=head_epochs,
                     epochs=head_epochs + fine_epochs, verbose=verbose)


def from_scratch(model, data, epochs, lr=1e-3, verbose=2):
    """The baseline: the same model from random weights, trained end to end for `epochs`."""
    _compile(model, lr)
    return model.fit(data.train, validation_data=data.validation, epochs=epochs, verbose=verbose)


def small_set(spec, train_examples, val_examples, image_size, batch_size=32, seed=0):
    """(train, validation) pipelines of `train_examples` / `val_examples` images of `spec`, evenly spread."""
    source = data_lib.open_source(spec)
    n = source.num_examples
    if n is None or train_examples + val_examples > n:
        raise ValueError(f"`train_examples` + `val_examples` must be at most the {n} examples of {spec!r}; "
                         f"received {train_examples} + {val_examples}")
    rest, validation = data_lib.split_validation(source, val_examples / n)
    if train_examples < rest.num_examples:
        _, train = data_lib.split_validation(rest, train_examples / rest.num_examples)
    else:
        train = rest
    common = dict(batch_size=batch_size, image_size=image_size, num_classes=source.num_classes, seed=seed)
    return types.SimpleNamespace(
        train=data_lib.make_pipeline(train, training=True, augment="basic", **common),
        validation=data_lib.make_pipeline(validation, **common),
        num_train=train.num_examples, num_validation=validation.num_examples, num_classes=source.num_classes,
    )


def compare(model_name, weights, data, image_size, head_epochs, fine_epochs, verbose=2):
    """Validation accuracy of the fine-tuned preset and of the same model from scratch, same steps."""
    tuned, backbone = build(model_name, weights, image_size, data.num_classes)
    tuned_history = fine_tune(tuned, backbone, data, head_epochs, fine_epochs, verbose=verbose)
    scratch, _ = build(model_name, None, image_size, data.num_classes)
    scratch_history = from_scratch(scratch, data, head_epochs + fine_epochs, verbose=verbose)
    return {
        "model": model_name, "weights": str(weights), "image_size": list(image_size),
        "train_examples": data.num_train, "val_examples": data.num_validation,
        "epochs": head_epochs + fine_epochs, "head_epochs": head_epochs,
        "fine_tuned_val_accuracy": float(tuned_history.history["val_accuracy"][-1]),
        "scratch_val_accuracy": float(scratch_history.history["val_accuracy"][-1]),
    }, tuned


def _image_size(model_name, weights, requested):
    if requested:
        return (requested, requested)
    source = applications.weights.weights_source(model_name, weights)
    shape = source.preset.input_shape if source.preset is not None else None
    return tuple(shape[:2]) if shape and shape[0] else (64, 64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="EffResNet18")
    parser.add_argument("--weights", default=None, help="a preset name or directory, a .weights.h5 path or URL")
    parser.add_argument("--data", default="synthetic:400", help="a data spec (see `effconv train --help`)")
    parser.add_argument("--train-examples", type=int, default=300)
    parser.add_argument("--val-examples", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=None, help="default: the preset's input size, else 64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--fine-epochs", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the comparison to this JSON file")
    parser.add_argument("--output", default=None, help="where to save the fine-tuned .keras model")
    args = parser.parse_args(argv)
    size = _image_size(args.model, args.weights, args.image_size)
    data = small_set(args.data, args.train_examples, args.val_examples, size, args.batch_size)
    result, tuned = compare(args.model, args.weights, data, size, args.head_epochs, args.fine_epochs)
    print(f"{args.model} on {data.num_train} images, {result['epochs']} epochs: fine-tuned from {args.weights} "
          f"{result['fine_tuned_val_accuracy']:.1%}, from scratch {result['scratch_val_accuracy']:.1%} "
          f"(validation, {data.num_validation} images)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.output:
        tuned.save(args.output)
    return result


if __name__ == "__main__":
    main()
