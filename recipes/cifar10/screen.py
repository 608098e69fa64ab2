"""Screen layouts of the pooled SIC net (`keras_effconv.applications.sic_cifar`) with the CIFAR-10 recipe.

    python recipes/cifar10/screen.py --model SICScreenA --epochs 10 --seed 0 --output runs/SICScreenA \
        --results recipes/cifar10/screen.json --run-name SICScreenA-10ep-seed0

Each variant is EffSICNet's builder with another stem, widths and steps per stage, registered under its
name by this script only (not a package model). All fit ResNet20's MACs / 4 (10.2 M). The results are in
`screen.json` and README.md beside this file.
"""

import sys

from keras_effconv.applications import sic_cifar
from keras_effconv.training import recipes

VARIANTS = {
    "SICScreenA": dict(stem=24, widths=(64, 192, 384), steps=(2, 2, 2)),  # wider last stage
    "SICScreenB": dict(stem=24, widths=(64, 192, 288), steps=(2, 2, 3)),  # one more step at 4x4
    "SICScreenC": dict(stem=16, widths=(64, 256, 256), steps=(2, 2, 2)),  # EffSICNet8 with a 16-channel stem
    "SICScreenD": dict(stem=16, widths=(48, 160, 320), steps=(2, 3, 3)),  # deeper, narrower
    "SICScreenG": dict(stem=16, widths=(64, 192, 256, 512), steps=(2, 2, 2, 2)),  # a 4th stage at 2x2
}

for _name, _config in VARIANTS.items():
    sic_cifar._factory(_name, **_config)

if __name__ == "__main__":
    sys.exit(recipes.main("cifar10", "recipes/cifar10/screen.py", description=__doc__.split("\n\n")[0]))
