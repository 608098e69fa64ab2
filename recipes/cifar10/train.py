"""CIFAR-10 recipe: `effconv train` with the CIFAR-10 defaults, plus a results record per run.

    python recipes/cifar10/train.py --model EffResNet20 --epochs 10 --output runs/eff20

The defaults (keras_effconv.training.recipes.RECIPES["cifar10"]): the 50,000 training images in
../shared (every 10th record validates: 45k/5k), flip + pad-4 random crop, SGD Nesterov batch 128,
peak lr 0.2 with 1 warmup epoch and cosine decay to 0, weight decay 5e-4 (not biases, BN or depthwise
kernels), label smoothing 0.1; the best checkpoint is also scored with flip TTA. Any `effconv train`
option overrides them (`--help`). See README.md beside this file for the results.
"""

import sys

from keras_effconv.training import recipes

if __name__ == "__main__":
    sys.exit(recipes.main("cifar10", "recipes/cifar10/train.py", description=__doc__.split("\n\n")[0]))
