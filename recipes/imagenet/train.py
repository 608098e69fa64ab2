"""ImageNet recipe: `effconv train` with the ImageNet defaults on one or many hosts (README.md here).

    # once, on one host: build tfds imagenet2012 from the two manually downloaded tar files
    python recipes/imagenet/train.py prepare --manual-dir ~/imagenet-tars --data-dir ~/tensorflow_datasets
    # on every worker (each with its own TF_CONFIG), or on one multi-GPU host with --strategy mirrored:
    python recipes/imagenet/train.py --replicas 16 --data-dir ~/tensorflow_datasets --output /shared/runs/effr50
    # the smoke version of the same code path, offline: synthetic data, tiny steps
    python recipes/imagenet/train.py --smoke --output /tmp/imagenet-smoke

The defaults (keras_effconv.training.recipes.RECIPES["imagenet"]): EffResNet50, 224x224 inputs,
random-resized crop + flip, SGD Nesterov momentum 0.9, weight decay 1e-4 (not biases, BN or depthwise
kernels), label smoothing 0.1, 90 epochs, 5 warmup epochs then cosine decay to 0, MultiWorkerMirrored-
Strategy (TF_CONFIG) with the custom training loop. `--replicas R` (workers x accelerators each) and
`--per-replica-batch B` (default 64) set the global batch R*B and the peak learning rate by the linear
scaling rule 0.1 * R*B / 256. Any `effconv train` option given after them overrides the defaults.
"""

import argparse
import os
import sys

BASE_BATCH, BASE_LR = 256, 0.1  # the reference point of the linear scaling rule
# The same code path at toy size: the recipe's model and options, 32x32 synthetic images, 2 x 2 steps.
SMOKE = ["--data", "synthetic:64", "--val-data", "", "--val-split", "0.25", "--image-size", "32,32",
         "--epochs", "2", "--steps-per-epoch", "2", "--warmup-epochs", "1", "--worker-timeout", "600"]


def scaled_lr(global_batch):
    """Linear scaling rule (Goyal et al. 2017): the peak lr grows with the global batch, 0.1 at 256."""
    return BASE_LR * global_batch / BASE_BATCH


def prepare(argv):
    """Build the TFDS `imagenet2012` dataset in --data-dir from the tar files in --manual-dir."""
    parser = argparse.ArgumentParser(prog="train.py prepare", description=prepare.__doc__)
    parser.add_argument("--manual-dir", required=True, help="folder holding ILSVRC2012_img_train.tar and _val.tar")
    parser.add_argument("--data-dir", default="~/tensorflow_datasets", help="TFDS data_dir (default: %(default)s)")
    args = parser.parse_args(argv)
    manual = os.path.expanduser(args.manual_dir)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        if not os.path.isfile(os.path.join(manual, name)):
            parser.error(f"--manual-dir {manual!r} has no {name} (download it from image-net.org first)")
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=os.path.expanduser(args.data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    print(f"prepared {builder.info.full_name} in {builder.data_dir}")
    return 0


def recipe_argv(argv):
    """(effconv train arguments, smoke?) from this script's own options and the pass-through rest."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--per-replica-batch", type=int, default=64)
    parser.add_argument("--smoke", action="store_true")
    own, rest = parser.parse_known_args(argv)
    if own.replicas < 1 or own.per_replica_batch < 1:
        raise SystemExit(f"error: --replicas and --per-replica-batch must be >= 1; received "
                         f"replicas={own.replicas}, per_replica_batch={own.per_replica_batch}")
    batch = own.replicas * (own.per_replica_batch if not own.smoke else 8)
    scaled = ["--batch-size", str(batch), "--lr", f"{scaled_lr(batch):g}"]
    return scaled + (SMOKE if own.smoke else []) + rest, own.smoke


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["prepare"]:
        return prepare(argv[1:])
    from keras_effconv.training import recipes

    effconv_argv, _ = recipe_argv(argv)
    print("effconv train (recipe imagenet) " + " ".join(effconv_argv), flush=True)
    return recipes.main("imagenet", "recipes/imagenet/train.py", effconv_argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
