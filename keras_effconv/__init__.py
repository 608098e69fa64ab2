"""keras_effconv: efficient convolutional layers and the models built from them (Keras 3 / TF).

Importing the package registers every serializable layer with Keras, so
`keras.saving.load_model("model.keras")` works right after `import keras_effconv`. The other
subpackages (applications, analysis, data, export, training, benchmark) load on first use.
"""

__version__ = "0.1.0"

from keras_effconv import _quiet

_quiet.import_tensorflow(_quiet.cli_is_quiet())

from keras_effconv import implementation  # noqa: E402,F401
from keras_effconv import layers  # noqa: E402,F401 - registers the layers with keras.saving
from keras_effconv.implementation import implementation as use_implementation  # noqa: E402,F401
from keras_effconv.implementation import set_implementation  # noqa: E402,F401

_LAZY = ("analysis", "applications", "benchmark", "cli", "data", "export", "ops", "training")


def __getattr__(name):
    """`keras_effconv.applications` etc. without an explicit import (imported on first access)."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"keras_effconv.{name}")
    raise AttributeError(f"module 'keras_effconv' has no attribute {name!r}")
