"""Export helpers: TFLite conversion (builtins only), LiteRT execution and SavedModel export."""

from keras_effconv.export.tflite import LiteRTRunner
from keras_effconv.export.tflite import assert_builtins_only
from keras_effconv.export.tflite import tflite_op_names
from keras_effconv.export.tflite import to_tflite
