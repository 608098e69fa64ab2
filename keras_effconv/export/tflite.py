"""TFLite conversion with builtin ops only, and a LiteRT runner (ai-edge-litert, XNNPACK).

Conversion goes through `TFLiteConverter.from_keras_model`, which freezes variables into constants
(so BatchNorm scales and permutations folded into kernels are constant-folded); converting from
concrete functions keeps variables and runs ~10x slower in LiteRT.
"""

import numpy as np
import tensorflow as tf

from keras_effconv import _quiet
from keras_effconv import implementation


def to_tflite(model, quantize=None, representative_dataset=None):
    """Convert a Keras model to a TFLite flatbuffer using `TFLITE_BUILTINS` only.

    quantize: None (fp32), "float16", or "int8" (needs `representative_dataset`, a callable
    yielding lists of input arrays, as `TFLiteConverter.representative_dataset` expects).
    """
    if quantize not in (None, "float16", "int8"):
        raise ValueError(f"`quantize` must be None, 'float16' or 'int8'; received quantize={quantize!r}")
    if quantize == "int8" and representative_dataset is None:
        raise ValueError("`representative_dataset` is required for quantize='int8'; received None")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
    with implementation.exporting():
        return converter.convert()


def _interpreter(tflite_bytes, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=tflite_bytes, num_threads=num_threads)


def tflite_op_names(tflite_bytes):
    """The set of operator names in a flatbuffer (custom and Flex ops appear under their own names)."""
    interpreter = _interpreter(tflite_bytes)
    return {detail["op_name"] for detail in interpreter._get_ops_details()}


def assert_builtins_only(tflite_bytes):
    """Raise AssertionError if the flatbuffer contains a Flex or custom op."""
    names = tflite_op_names(tflite_bytes)
    bad = sorted(n for n in names if n.startswith("Flex") or n == "CUSTOM" or not n.isupper())
    if bad:
        raise AssertionError(f"TFLite model has non-builtin ops: {bad}")
    return names


class LiteRTRunner:
    """Runs a single-input flatbuffer with LiteRT (XNNPACK), resizing the batch as needed."""

    def __init__(self, tflite_bytes, num_threads=2):
        with _quiet.c_stderr_quieted():  # LiteRT prints "INFO: Created ... XNNPACK delegate" to fd 2
            self.interpreter = _interpreter(tflite_bytes, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._shape = None
        self._invoked = False

    def __call__(self, x):
        x = np.asarray(x)
        if self._shape != x.shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(x.shape))
            with _quiet.c_stderr_quieted():
                self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._shape = x.shape
        scale, zero_point = self._input.get("quantization", (0.0, 0))
        if self._input["dtype"] != x.dtype and scale:
            x = np.round(x / scale + zero_point)
        self.interpreter.set_tensor(self._input["index"], x.astype(self._input["dtype"]))
        if self._invoked:
            self.interpreter.invoke()
        else:  # the delegate is applied (and announced) on the first invoke
            with _quiet.c_stderr_quieted():
                self.interpreter.invoke()
            self._invoked = True
        y = self.interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output.get("quantization", (0.0, 0))
        if scale and y.dtype != np.float32:
            y = (y.astype(np.float32) - zero_point) * scale
        return y
