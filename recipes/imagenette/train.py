"""Imagenette recipe: `effconv train` with the Imagenette defaults, plus a results record per run.

    python recipes/imagenette/train.py --model EffResNet50 --epochs 8 --output runs/effr50

The defaults (keras_effconv.training.recipes.RECIPES["imagenette"]): the 9,469 Imagenette training
images in ../shared (every 10th record validates: 8,522/947), 112x112 inputs, random-resized crop
(25-100 % of the area) + flip, SGD Nesterov batch 32, peak lr 0.1 with 1 warmup epoch and cosine
decay to 0, weight decay 5e-4 (not biases, BN or depthwise kernels), label smoothing 0.1, 8 epochs.
Any `effconv train` option overrides them (`--help`). See README.md beside this file for the results.
"""

import sys

from keras_effconv.training import recipes

if __name__ == "__main__":
    sys.exit(recipes.main("imagenette", "recipes/imagenette/train.py", description=__doc__.split("\n\n")[0]))
