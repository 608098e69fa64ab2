"""Named recipes: `effconv train` defaults for one dataset, plus a results record per run.

A recipe is only defaults, so every `effconv train` option still applies and overrides it:
`recipes/cifar10/train.py --model ResNet20 --epochs 30` is `effconv train` with the CIFAR-10
defaults below. `run` also writes OUTPUT/result.json (MACs, params, seconds per epoch, validation
accuracy per epoch, best and flip-TTA accuracy, the command) and can merge it into a results file.
"""

import argparse
import contextlib
import json
import os
import shlex
import sys
import time

SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                            "shared", "data"))

RECIPES = {
    # He et al.'s CIFAR setup shortened to an epoch budget (recipes/cifar10/README.md).
    "cifar10": dict(
        model="EffResNet20", data=os.path.join(SHARED_DATA, "cifar10-train"), output="runs/cifar10",
        image_size="32,32", batch_size=128, epochs=15, lr=0.2, augment="crop", label_smoothing=0.1,
        weight_decay=5e-4, warmup_epochs=1.0, val_split=0.1, shuffle_buffer=50000, quiet=True,
    ),
    # ImageNet-style at a CPU-sized resolution (recipes/imagenette/README.md).
    "imagenette": dict(
        model="EffResNet50", data=os.path.join(SHARED_DATA, "imagenette-224-train"), output="runs/imagenette",
        image_size="112,112", batch_size=32, epochs=8, lr=0.1, augment="inception", label_smoothing=0.1,
        weight_decay=5e-4, warmup_epochs=1.0, val_split=0.1, shuffle_buffer=10000, quiet=True,
    ),
    # Full ImageNet at 224x224 on many accelerators/hosts (recipes/imagenet/README.md); batch 256 / lr 0.1
    # is the reference point of the linear scaling rule applied by recipes/imagenet/train.py.
    "imagenet": dict(
        model="EffResNet50", data="tfds:imagenet2012:train", val_data="tfds:imagenet2012:validation",
        output="runs/imagenet", image_size="224,224", batch_size=256, epochs=90, lr=0.1, augment="inception",
        label_smoothing=0.1, weight_decay=1e-4, warmup_epochs=5.0, val_split=0.0, cache=False,
        shuffle_buffer=10000, strategy="multiworker", loop="custom", worker_timeout=1800.0, quiet=True,
    ),
}


# What a preset trained by a recipe says of its data: `dataset` and `accuracy_split` of its metadata.json,
# formatted with the run's counts; used only when the run keeps the recipe's data and validation split.
_SPLIT = "validation split: every {every}th record of {folder} ({num_validation} images), never trained on"
DATASETS = {
    "cifar10": dict(
        dataset="CIFAR-10 ({num_train:,} of the {num_total:,} training images; JPEG q75 re-encoding)",
        accuracy_split=_SPLIT,
    ),
    "imagenette": dict(
        dataset="Imagenette ({num_train:,} of the {num_total:,} training images, 10 ImageNet classes, at {size}x{size})",
        accuracy_split=_SPLIT,
    ),
}


def dataset_metadata(recipe, config, result):
    """The recipe's `dataset` / `accuracy_split` wording for a preset of this run, or {} when the run
    changed the recipe's data or validation split (the preset then records them as `effconv train` does)."""
    defaults = RECIPES.get(recipe, {})
    if recipe not in DATASETS or config.val_data or config.data != defaults.get("data") \
            or config.val_split != defaults.get("val_split"):
        return {}
    values = dict(num_train=result["num_train"], num_validation=result["num_validation"],
                  num_total=result["num_train"] + result["num_validation"], every=round(1 / config.val_split),
                  folder=os.path.basename(os.path.normpath(config.data)), size=result["input_shape"][0])
    return {key: text.format(**values) for key, text in DATASETS[recipe].items()}


def parse_args(recipe, argv=None, description=None):
    """`effconv train`'s arguments with the defaults of `recipe`, plus --results / --run-name."""
    from keras_effconv.cli import train as train_cli

    if recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {sorted(RECIPES)}; received recipe={recipe!r}")
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_cli.add_arguments(parser)
    parser.set_defaults(**RECIPES[recipe])
    parser.add_argument("--results", help="merge the result into this JSON file (a results.json beside the recipe)")
    parser.add_argument("--run-name", help="key of this run in --results (default: MODEL-EPOCHSep-seedSEED, plus "
                        "-OPTIONVALUE per option changed from the recipe, e.g. -cutmix1, and -distill-TEACHER-wA "
                        "with --distill-from)")
    return parser.parse_args(argv)


def merge_result(path, key, result):
    """Add `result` under `key` to the JSON object in `path` (created if missing), atomically."""
    import fcntl

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        payload = {}
        if os.path.exists(path):
            with open(path) as f:
                payload = json.load(f)
        payload.setdefault("runs", {})[key] = result
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + ".lock")


# Options that do not change what is trained (where it runs, where it writes, what it prints), and those a
# record keeps under their own keys; any other option set away from the recipe's default is a recipe change.
_NOT_RECIPE = {"model", "epochs", "seed", "output", "overwrite", "save_preset", "results", "run_name", "quiet",
               "data_dir", "download", "jit_compile", "strategy", "loop", "worker_timeout", "virtual_devices",
               "distill_from", "distill_weight", "tta"}


def recipe_changes(recipe, args):
    """{option: value} of the options `args` sets away from `recipe`'s defaults (e.g. {"cutmix": 1.0}):
    a run with changes is another recipe, so it is named, recorded and reported apart from the plain runs."""
    if recipe not in RECIPES:
        return {}
    defaults = vars(parse_args(recipe, []))
    return {key: value for key, value in sorted(vars(args).items())
            if key not in _NOT_RECIPE and key in defaults and value != defaults[key]}


def _format_value(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_run_name(config, changes=None):
    """MODEL-EPOCHSep-seedSEED, plus -OPTIONVALUE per recipe change and -distill-TEACHER-wA for a distilled
    run: never the plain run's key."""
    name = f"{config.model}-{config.epochs}ep-seed{config.seed}"
    for key, value in (changes or {}).items():
        name += f"-{key.replace('_', '-')}{_format_value(value)}"
    if config.distill_from:
        teacher = os.path.basename(config.distill_from).removesuffix(".keras").replace(":", "-")
        name += f"-distill-{teacher}-w{config.distill_weight:g}"
    return name


def preset_metadata(result):
    """The entries of a run's record that a preset's metadata.json repeats."""
    keys = ("epochs", "seed", "macs", "recipe_changes", "distill_from", "distill_weight", "seconds_per_epoch_median", "wall_seconds")
    return {"flip_tta_accuracy": result["val_accuracy_best_flip_tta"], **{k: result[k] for k in keys}}


def run(args, command, log=print, recipe=None):
    """Train with `effconv train`'s loop; returns the result dict (also OUTPUT/result.json), and with
    --save-preset writes the best checkpoint as a preset (described as `DATASETS[recipe]` says)."""
    import numpy as np

    from keras_effconv import training
    from keras_effconv.analysis import count_macs
    from keras_effconv.cli import train as train_cli

    config = train_cli.config_from_args(args)
    train_cli.check_save_preset(args)
    changes = recipe_changes(recipe, args)
    start = time.perf_counter()
    outcome = training.train(config, log=log)
    wall = time.perf_counter() - start
    with open(os.path.join(config.output, "run.json")) as f:
        run_info = json.load(f)
    hist = {k: [round(float(v), 5) for v in vs] for k, vs in outcome.history.items() if k != "learning_rate"}
    result = {
        "model": config.model,
        "macs": int(count_macs(outcome.model)),
        "macs_counter": "keras_effconv.analysis.count_macs",
        "params": int(outcome.model.count_params()),
        "input_shape": list(outcome.input_shape),
        "epochs": config.epochs,
        "seed": config.seed,
        "recipe_changes": changes,  # options away from the recipe's defaults: reported apart, like distillation
        "distill_from": config.distill_from,  # a distilled run is reported apart from the plain ones
        "distill_weight": config.distill_weight if config.distill_from else None,
        "num_train": outcome.num_train,
        "num_validation": outcome.num_validation,
        "val_accuracy_last": hist["val_accuracy"][-1],
        "val_accuracy_best": max(hist["val_accuracy"]),
        "val_accuracy_best_flip_tta": run_info["best"].get("val_accuracy_flip"),
        "val_accuracy_best_flip_translate_tta": run_info["best"].get("val_accuracy_flip_translate"),
        "best_epoch": int(np.argmax(hist["val_accuracy"])) + 1,
        "seconds_per_epoch_median": round(float(np.median(hist.get("epoch_seconds", [float("nan")]))), 1),
        "wall_seconds": round(wall, 1),
        "history": hist,
        "command": command,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(config.output, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    if args.results:
        merge_result(args.results, args.run_name or default_run_name(config, changes), result)
    if args.save_preset:  # the best checkpoint, with what this record says of it
        train_cli.save_preset(args, config, outcome, command=command, **preset_metadata(result),
                              **dataset_metadata(recipe, config, result))
    log(f"{config.model}: val_accuracy {result['val_accuracy_last']:.4f} after {config.epochs} epochs "
        f"(best {result['val_accuracy_best']:.4f} @ {result['best_epoch']}, flip TTA "
        f"{result['val_accuracy_best_flip_tta']}); {result['seconds_per_epoch_median']:.0f} s/epoch")
    return result


def main(recipe, script, argv=None, description=None):
    """Entry point of a recipe script: parse with the recipe's defaults, train, record."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(recipe, argv, description)
    run(args, f"python {script} " + shlex.join(argv), recipe=recipe)
    return 0
