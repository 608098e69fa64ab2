"""Model factories in the style of keras.applications."""

from keras_effconv.applications.registry import available_models
from keras_effconv.applications.registry import get_model
from keras_effconv.applications.registry import register_model
