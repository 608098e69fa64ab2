"""keras_effconv: efficient convolutional layers and the models built from them (Keras 3 / TF)."""

__version__ = "0.1.0"

from keras_effconv import implementation  # noqa: F401
from keras_effconv.implementation import implementation as use_implementation  # noqa: F401
from keras_effconv.implementation import set_implementation  # noqa: F401
