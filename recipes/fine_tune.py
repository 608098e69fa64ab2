"""Fine-tune an Eff backbone on your data: freeze the backbone and train a head, then unfreeze it
with BatchNorm kept in inference mode (its statistics stay those of pre-training).

    python recipes/fine_tune.py --model EffResNet50 --weights PATH_OR_PRESET \
        --data path/to/class_folders --image-size 160 --head-epochs 5 --fine-epochs 10

Without --data it runs on the embedded synthetic dataset (offline smoke run).
Labels are one-hot (the pipeline's format); models take raw [0, 255] pixels.
"""

import argparse

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


def fine_tune(model, backbone, data, head_epochs, fine_epochs, head_lr=1e-3, fine_lr=1e-4):
    backbone.trainable = False
    model.compile(keras.optimizers.Adam(head_lr), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train, validation_data=data.validation, epochs=head_epochs, verbose=2)
    backbone.trainable = True
    freeze_batchnorm(backbone)  # recompile below so both changes take effect
    model.compile(keras.optimizers.Adam(fine_lr), "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(data.train, validation_data=data.validation, initial_epoch=head_epochs,
                        epochs=head_epochs + fine_epochs, verbose=2)
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="EffResNet18")
    parser.add_argument("--weights", default=None, help="None, a preset name, a .weights.h5 path or URL")
    parser.add_argument("--data", default="synthetic:400", help="a data spec (see `effconv train --help`)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--fine-epochs", type=int, default=2)
    parser.add_argument("--output", default=None, help="where to save the fine-tuned .keras model")
    args = parser.parse_args(argv)
    size = (args.image_size, args.image_size)
    data = data_lib.load(args.data, batch_size=args.batch_size, image_size=size, val_split=0.2)
    model, backbone = build(args.model, args.weights, size, data.num_classes)
    history = fine_tune(model, backbone, data, args.head_epochs, args.fine_epochs)
    print(f"validation accuracy after fine-tuning: {history.history['val_accuracy'][-1]:.3f}")
    if args.output:
        model.save(args.output)
    return history


if __name__ == "__main__":
    main()
