"""CIFAR-10 recipe: `effconv train` with the CIFAR defaults, plus a results record per run.

    python recipes/cifar10/train.py --model EffResNet20 --epochs 15 --output runs/eff20

Every option of `effconv train` works here (`--help`); only the defaults differ, so that
`effconv train --data DIR --image-size 32,32 --batch-size 128 --lr 0.2 --augment crop
--label-smoothing 0.1 --weight-decay 5e-4 ...` is the same recipe:
- data: the 50,000 CIFAR-10 training images in ../shared (JPEG TFRecords); every 10th record is the
  validation split (5,000), 45,000 train; the CIFAR-10 test split is never touched;
- augmentation "crop": horizontal flip + zero-pad-4 random crop, per image (core Keras layers);
- SGD, Nesterov momentum 0.9, batch 128, peak lr 0.2, 1 warmup epoch then cosine decay to 0;
  decoupled weight decay 5e-4 on conv/dense kernels (not biases, BN or depthwise kernels);
  label smoothing 0.1; the best checkpoint is also scored with flip test-time augmentation.

Writes what `effconv train` writes (best.keras, last.keras, log.csv, run.json, ...) plus
result.json: MACs (keras_effconv.analysis.count_macs), params, seconds per epoch, validation accuracy
per epoch, best and flip-TTA accuracy, the command. `--results FILE --run-name KEY` merges it into FILE.
"""

import argparse
import contextlib
import json
import os
import shlex
import sys
import time

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
                            "cifar10-train")
CIFAR_DEFAULTS = dict(
    model="EffResNet20", data=os.path.normpath(DEFAULT_DATA), output="runs/cifar10", image_size="32,32",
    batch_size=128, epochs=15, lr=0.2, augment="crop", label_smoothing=0.1, weight_decay=5e-4,
    warmup_epochs=1.0, val_split=0.1, shuffle_buffer=50000, quiet=True,
)


def parse_args(argv=None):
    from keras_effconv.cli import train as train_cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    train_cli.add_arguments(parser)
    parser.set_defaults(**CIFAR_DEFAULTS)
    parser.add_argument("--results", help="merge the result into this JSON file (e.g. recipes/cifar10/results.json)")
    parser.add_argument("--run-name", help="key of this run in --results (default: MODEL-EPOCHSep-seedSEED)")
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


def run(args, argv=None, log=print):
    """Train with `effconv train`'s loop; returns the result dict (also OUTPUT/result.json)."""
    import numpy as np

    from keras_effconv import training
    from keras_effconv.analysis import count_macs
    from keras_effconv.cli import train as train_cli

    config = train_cli.config_from_args(args)
    start = time.perf_counter()
    outcome = training.train(config, log=log)
    wall = time.perf_counter() - start
    with open(os.path.join(config.output, "run.json")) as f:
        run_info = json.load(f)
    model = outcome.model
    hist = {k: [round(float(v), 5) for v in vs] for k, vs in outcome.history.items() if k != "learning_rate"}
    result = {
        "model": config.model,
        "macs": int(count_macs(model)),
        "macs_counter": "keras_effconv.analysis.count_macs",
        "params": int(model.count_params()),
        "epochs": config.epochs,
        "seed": config.seed,
        "num_train": outcome.num_train,
        "num_validation": outcome.num_validation,
        "val_accuracy_last": hist["val_accuracy"][-1],
        "val_accuracy_best": max(hist["val_accuracy"]),
        "val_accuracy_best_flip_tta": run_info["best"].get("val_accuracy_flip"),
        "best_epoch": int(np.argmax(hist["val_accuracy"])) + 1,
        "seconds_per_epoch_median": round(float(np.median(hist.get("epoch_seconds", [float("nan")]))), 1),
        "wall_seconds": round(wall, 1),
        "history": hist,
        "command": "python recipes/cifar10/train.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(config.output, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    if args.results:
        merge_result(args.results, args.run_name or f"{config.model}-{config.epochs}ep-seed{config.seed}", result)
    log(f"{config.model}: val_accuracy {result['val_accuracy_last']:.4f} after {config.epochs} epochs "
        f"(best {result['val_accuracy_best']:.4f} @ {result['best_epoch']}, flip TTA "
        f"{result['val_accuracy_best_flip_tta']}); {result['seconds_per_epoch_median']:.0f} s/epoch")
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    run(parse_args(argv), argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
