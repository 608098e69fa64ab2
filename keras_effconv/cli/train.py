"""`effconv train`: train a registered model on a data spec, with checkpoints and resume."""

import sys

from keras_effconv._paths import check_output_folder
from keras_effconv.cli.common import TTA_VIEWS
from keras_effconv.cli.common import add_data_arguments
from keras_effconv.cli.common import fraction_arg
from keras_effconv.cli.common import non_negative_float
from keras_effconv.cli.common import number_arg
from keras_effconv.cli.common import positive_float
from keras_effconv.cli.common import positive_int
from keras_effconv.cli.common import seed_arg

HELP = "train a registered model (checkpoints, logs, resume after interruption)"
DESCRIPTION = """Train MODEL on DATA. Writes to --output:
  best.keras, last.keras   checkpoints (written atomically; best = highest val_accuracy)
  log.csv                  per-epoch metrics (CSVLogger)
  tensorboard/             TensorBoard logs (tensorboard --logdir OUTPUT/tensorboard)
  backup/                  BackupAndRestore state while the run is unfinished
  run.json                 configuration, class names, input shape and final metrics
Run the same command again after an interruption (Ctrl-C, kill, crash) to resume at the first
unfinished epoch. Models take raw RGB pixels in [0, 255] and normalise them inside (include_preprocessing=True).
Without --data, trains on a generated synthetic shapes dataset (offline).

examples:
  effconv train --model DemoCNN --epochs 5
  effconv train --model ResNet50 --data ../shared/data/cifar10-train --val-split 0.1 \\
      --epochs 30 --batch-size 128 --optimizer sgd --lr 0.1 --label-smoothing 0.1 --output runs/r50
  effconv train --model MobileNetV2 --data tfds:cifar10 --data-dir ~/tensorflow_datasets \\
      --image-size 96,96 --augment randaugment --mixup 0.2 --optimizer adamw --weight-decay 0.05
  effconv train --model DemoCNN --strategy mirrored --virtual-devices 2   # 2 replicas on one CPU
  effconv train --model EffResNet20 --data tfds:cifar10 --distill-from ResNet20:cifar10 --distill-weight 0.5"""


def add_arguments(parser):
    parser.add_argument("--model", default="DemoCNN", help="model name (default: %(default)s); see `effconv summary --list`")
    parser.add_argument("--output", default="effconv-run", metavar="DIR", help="output folder (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    parser.add_argument("--save-preset", metavar="DIR",
                        help="at the end, write the best checkpoint as a preset directory (config.json, "
                        "model.weights.h5, metadata.json); load it with MODEL(weights=DIR)")
    data = add_data_arguments(parser, required=False, default="synthetic")
    data.add_argument("--split", default="train", help="TFDS split to train on (default: %(default)s)")
    data.add_argument("--val-split", type=fraction_arg, default=0.1, metavar="F",
                      help="carve this fraction of the training data out, deterministically, for validation "
                      "(every 1/F-th example; default: %(default)s; 0 disables)")
    data.add_argument("--val-data", metavar="SPEC", help="a separate validation data spec (instead of --val-split)")
    data.add_argument("--classes", type=positive_int, help="number of classes (default: from the data)")
    data.add_argument("--augment", choices=("none", "basic", "crop", "randaugment", "inception"), default="basic",
                      help="basic: RandomFlip + RandomTranslation; crop: RandomFlip + zero-pad-and-crop by whole "
                      "pixels (the CIFAR standard); randaugment: basic + keras.layers.RandAugment; inception: "
                      "random-resized crop + flip (ImageNet style) (default: %(default)s)")
    data.add_argument("--mixup", type=non_negative_float, default=0.0, metavar="ALPHA", help="keras.layers.MixUp alpha (0: off)")
    data.add_argument("--cutmix", type=non_negative_float, default=0.0, metavar="FACTOR", help="keras.layers.CutMix factor (0: off)")
    data.add_argument("--no-cache", dest="cache", action="store_false", help="don't cache decoded images in memory")
    data.add_argument("--shuffle-buffer", type=positive_int, default=10000, help="shuffle buffer (default: %(default)s)")
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--epochs", type=positive_int, default=10, help="epochs (default: %(default)s)")
    opt.add_argument("--steps-per-epoch", type=positive_int, help="cap the steps per epoch (quick runs)")
    opt.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                     help="sgd (Nesterov momentum 0.9) or adamw (default: %(default)s)")
    opt.add_argument("--lr", type=positive_float, help="peak learning rate (default: 0.1*batch/256 for sgd, 1e-3 for adamw)")
    opt.add_argument("--warmup-epochs", type=non_negative_float, default=1.0,
                     help="linear warmup epochs before the cosine decay to 0 (default: %(default)s)")
    opt.add_argument("--weight-decay", type=non_negative_float, default=None,
                     help="decoupled weight decay, not on biases/BN (default: 5e-4 sgd, 0.05 adamw)")
    opt.add_argument("--depthwise-decay", action="store_true",
                     help="apply the weight decay to depthwise kernels too (default: not)")
    opt.add_argument("--tta", choices=TTA_VIEWS, default="flip",
                     help="also score the best checkpoint on the validation data with test-time augmentation: "
                     "flip (the image and its mirror), or flip-translate (that too, and both shifted by a "
                     "pixel each way; scored with flip as well) (default: %(default)s)")
    opt.add_argument("--label-smoothing", type=fraction_arg, default=0.0, help="label smoothing in [0, 1) (default: 0)")
    opt.add_argument("--ema", type=fraction_arg, default=0.0, metavar="MOMENTUM",
                     help="keep an exponential moving average of the weights with this momentum (e.g. 0.999); "
                     "validation, checkpoints and presets use the average, with BatchNorm statistics re-estimated on 10 "
                     "training batches (not with --loop custom; default: 0, off)")
    opt.add_argument("--distill-from", metavar="SPEC",
                     help="knowledge distillation from a frozen teacher: MODEL:PRESET (e.g. ResNet20:cifar10) or a "
                     ".keras file, with the training data's input shape and classes; it scores each augmented "
                     "training batch and the targets become (1-A)*labels + A*teacher probabilities (validation "
                     "keeps the hard labels; not with --loop custom). Report distilled runs separately")
    opt.add_argument("--distill-weight", type=number_arg(float, 0.0, 1.0, low_open=True), default=0.5, metavar="A",
                     help="weight A of the teacher's probabilities in the targets, in (0, 1] (default: %(default)s)")
    opt.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    opt.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: %(default)s)")
    dist = parser.add_argument_group("distribution")
    dist.add_argument("--strategy", choices=("default", "mirrored", "multiworker", "multi-worker"), default="default",
                      help="tf.distribute strategy: mirrored = all local GPUs (or logical CPUs); multiworker (or "
                      "multi-worker) = MultiWorkerMirroredStrategy, cluster from TF_CONFIG, custom training loop; "
                      "default = multiworker when TF_CONFIG is set, else one device (default: %(default)s)")
    dist.add_argument("--loop", choices=("auto", "fit", "custom"), default="auto",
                      help="training loop: fit (Keras model.fit), custom (tf.distribute custom loop), auto = custom "
                      "for multiworker, else fit (default: %(default)s)")
    dist.add_argument("--worker-timeout", type=non_negative_float, default=600.0, metavar="SECONDS",
                      help="multiworker: fail (exit 1) when no step finishes for this long, e.g. a peer died; "
                      "also bounds each collective operation; 0 disables (default: %(default)s)")
    dist.add_argument("--virtual-devices", type=positive_int, metavar="N",
                      help="split the CPU into N logical devices (try --strategy mirrored without GPUs)")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def config_from_args(args):
    from keras_effconv import training

    weight_decay = args.weight_decay
    if weight_decay is None:
        weight_decay = 0.05 if args.optimizer == "adamw" else 5e-4
    return training.TrainConfig(
        model=args.model,
        data=args.data,
        output=args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=weight_decay,
        depthwise_decay=args.depthwise_decay,
        tta=args.tta,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        ema=args.ema,
        augment=args.augment,
        mixup=args.mixup,
        cutmix=args.cutmix,
        val_split=args.val_split,
        val_data=args.val_data,
        image_size=args.image_size,
        classes=args.classes,
        strategy=args.strategy,
        loop=args.loop,
        worker_timeout=args.worker_timeout,
        split=args.split,
        data_dir=args.data_dir,
        download=args.download,
        cache=args.cache,
        shuffle_buffer=args.shuffle_buffer,
        steps_per_epoch=args.steps_per_epoch,
        seed=args.seed,
        jit_compile=args.jit_compile,
        verbose=2 if args.quiet else "auto",
        overwrite=args.overwrite,
        on_bad_image=args.on_bad_image,
        distill_from=args.distill_from,
        distill_weight=args.distill_weight,
    )


def setup_devices(count):
    if not count:
        return
    from keras_effconv import training

    try:
        training.configure_virtual_devices(count)
    except RuntimeError as error:
        raise ValueError(f"--virtual-devices must be set before TensorFlow starts: {error}") from None


def command_line(args):
    """The `effconv train ...` command that reproduces `args` (every option that differs from its default)."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    words = ["effconv", "train"]
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        explicit = action.dest in ("model", "data")  # always named, defaults or not
        if not action.option_strings or action.dest == "save_preset" or (value == action.default and not explicit):
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            words.append(action.option_strings[0])
        else:
            text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            words += [action.option_strings[0], text]
    return shlex.join(words)


def check_save_preset(args):
    """Refuse a --save-preset folder that is neither new, empty nor a preset, before any training."""
    if args.save_preset:
        from keras_effconv.applications.presets import is_preset_dir

        check_output_folder(args.save_preset, "--save-preset", allow_non_empty=is_preset_dir(args.save_preset),
                            fix="give a new folder (or an existing preset, which is replaced)")


def save_preset(args, config, result, command=None, **metadata):
    """Write the best checkpoint of `result` as a preset at --save-preset, with its measured accuracy;
    `command`: the training command recorded (default: the `effconv train` equivalent of `args`),
    `metadata`: extra metadata.json entries (`dataset` and `accuracy_split` replace the defaults)."""
    import json
    import os

    from keras_effconv import applications

    with open(os.path.join(result.output, "run.json")) as f:
        best = json.load(f)["best"]
    measured_on_validation = "val_accuracy" in best
    if measured_on_validation:
        where = f"--val-data {config.val_data}" if config.val_data else f"--val-split {config.val_split} of {config.data}"
        split = f"validation ({result.num_validation} images, {where}), best epoch {best['epoch'] + 1}"
    else:
        split = f"training data (no validation split), best epoch {best['epoch'] + 1}"
    # The trained model's head gives the class count (TFRecord data has no class names).
    model = applications.get_model(config.model, input_shape=result.input_shape,
                                   classes=int(result.model.output.shape[-1]))
    model.load_weights(result.best_path)
    metadata = {"dataset": config.data, "accuracy_split": split, **metadata}  # a recipe may word them better
    preset = applications.save_preset(
        model, args.save_preset, overwrite=True, accuracy=best.get("val_accuracy" if measured_on_validation else "accuracy"),
        training_command=command or command_line(args), class_names=result.class_names,
        checkpoint=result.best_path, **metadata,
    )
    print(f"  preset:                   {preset.path}  (load with {config.model}(weights={preset.path!r}))")


def run(args, callbacks=()):
    check_output_folder(args.output, "--output")
    check_save_preset(args)
    setup_devices(args.virtual_devices)
    from keras_effconv import training

    config = config_from_args(args)
    try:
        result = training.train(config, callbacks=callbacks)
    except training.PeerFailure as error:  # a dead peer worker: one line, not a collective-op traceback
        if args.debug:
            raise
        print(f"effconv train: error: {error}", file=sys.stderr)
        return 1
    best = f"epoch {result.best_epoch + 1}" if result.best_epoch is not None else "n/a"
    print()
    print(f"Finished {config.model}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))
    print(f"  best checkpoint ({best}): {result.best_path}")
    print(f"  last checkpoint:          {result.last_path}")
    print(f"  logs: {result.output}/log.csv, {result.output}/tensorboard")
    if args.save_preset:
        save_preset(args, config, result)
    return 0
