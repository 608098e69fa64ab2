"""The layers' one foundation: argument checks, input validation, path recording, and `ConvBase`.

Every layer of the package derives from `Layer` (input rank, channel count and dtype checked with a
ValueError naming the layer; `resolved_implementation` records the path taken). Convolutions with
the usual Conv arguments derive from `ConvBase`, which owns those arguments, the bias, the output
shape and `call`, and leaves the kernel to a `convolution_op(x, path)` hook, as Keras' `BaseConv`.
"""

import inspect
import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_effconv import implementation as impl
from keras_effconv.layers.batch_norm import FusedBatchNormalization
from keras_effconv.ops import padding as pad
from keras_effconv.ops.topology import Topology


def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_tuple(value, n, name, minimum=1):
    """An int or a length-n sequence of ints >= minimum, as a tuple; ValueError naming `name`."""
    if is_int(value):
        values = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(is_int(v) for v in value):
        values = tuple(int(v) for v in value)
    else:
        values = None
    if values is None or min(values) < minimum:
        raise ValueError(f"`{name}` must be an int or a tuple of {n} ints >= {minimum}; received {name}={value!r}")
    return values


def positive_int(value, name):
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
    return int(value)


def check_number(value, name, low=None, high=None):
    """A real number (bools rejected) with low < value < high where given, as a float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value <= low) or (high is not None and value >= high):
        raise ValueError(f"`{name}` must be a number in ({low}, {high}); received {name}={value!r}")
    return float(value)


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool; received {name}={value!r}")
    return bool(value)


def check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received {name}={value!r}")
    return value


def check_padding(padding, allowed=("same", "valid")):
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(f"`padding` must be one of {allowed}; received padding={padding!r}")
    return padding.lower()


def check_strides_dilation(strides, dilation_rate):
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            "`strides` > 1 and `dilation_rate` > 1 cannot be combined; "
            f"received strides={strides!r}, dilation_rate={dilation_rate!r}"
        )


def check_groups(layer, input_shape, groups):
    """The input channels, known and divisible by `groups` (ValueError naming the layer otherwise)."""
    channels = layer.input_channels(input_shape)
    if channels % groups:
        raise ValueError(
            f"{layer.describe()} needs input channels divisible by groups={groups}; "
            f"received input_shape={tuple(input_shape)!r}"
        )
    return channels


def check_topology(topology):
    """None, {'layout': ..., 'neighborhood': ...}, {'blocks': G, 'band': c}, or a list of those (per step)."""
    if isinstance(topology, (list, tuple)) and topology:
        return [check_topology(t) for t in topology]
    if topology is None:
        return None
    if isinstance(topology, dict) and set(topology) == {"layout", "neighborhood"}:
        Topology(topology["layout"], topology["neighborhood"])  # ValueError naming layout/neighborhood
        return dict(topology)
    if isinstance(topology, dict) and set(topology) == {"blocks", "band"}:
        blocks, band = topology["blocks"], topology["band"]
        if not (is_int(blocks) and is_int(band) and 1 <= band <= blocks):
            raise ValueError(f"`topology` needs ints 1 <= band <= blocks; received topology={topology!r}")
        return dict(topology)
    raise ValueError(
        "`topology` must be None, {'layout': ..., 'neighborhood': ...}, {'blocks': G, 'band': c} or a list "
        f"of those; received topology={topology!r}"
    )


def layout_for(topology, channels, step=0):
    """(layout, neighborhood) for a projection reading `channels` channels, or (None, None) for dense.

    {'blocks': G, 'band': c} lays the channels out as (G, channels // G); each output reads c
    consecutive blocks (cyclically), all channels within them: connection ratio c / G.
    A list gives one topology per step (the last one repeats).
    """
    if isinstance(topology, list):
        topology = topology[min(step, len(topology) - 1)]
    if topology is None:
        return None, None
    if "layout" in topology:
        return tuple(topology["layout"]), tuple(topology["neighborhood"])
    blocks, band = topology["blocks"], topology["band"]
    if channels % blocks:
        raise ValueError(f"`topology` blocks={blocks} must divide the channels ({channels}); received topology={topology!r}")
    return (blocks, channels // blocks), (band, channels // blocks)


def batchnorm_scale_bias(bn, dtype):
    """Inference-mode BatchNorm as y = x * scale + bias (folded into the preceding kernel)."""
    variance = tf.cast(bn.moving_variance, tf.float32)
    scale = tf.math.rsqrt(variance + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    bias = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.center:
        bias = bias + tf.cast(bn.beta, tf.float32)
    return tf.cast(scale, dtype), tf.cast(bias, dtype)


def make_batchnorm(name, momentum, epsilon, dtype):
    """The BN of composite layers: Keras' BatchNormalization with the fused training step."""
    return FusedBatchNormalization(momentum=momentum, epsilon=epsilon, name=name, dtype=dtype)


def scaled_normal_std(fan_in, fan_out, contracted, n_factors):
    """Std of i.i.d. normal factors whose product-sum kernel has Glorot variance 2/(fan_in+fan_out)."""
    target = 2.0 / (fan_in + fan_out)
    return (target / contracted) ** (1.0 / (2 * n_factors))


def serialize(value):
    """A constructor argument as it goes into a config (Keras objects by their own serializers)."""
    if isinstance(value, keras.initializers.Initializer):
        return keras.initializers.serialize(value)
    if isinstance(value, keras.regularizers.Regularizer):
        return keras.regularizers.serialize(value)
    if callable(value):
        return keras.activations.serialize(value)
    return value


def constructor_arguments(cls):
    """Names of the explicit constructor arguments of `cls` and its bases below keras' Layer."""
    names = []
    for klass in cls.__mro__:
        if klass is keras.layers.Layer:
            break
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
    return names


class Layer(keras.layers.Layer):
    """Base of every layer here: input checks, the record of the path taken, and `get_config`.

    `input_rank` (class attribute): the rank of the channels-last input (batch included).
    `resolved_implementation`: the path ("reference", "tf", "xla" or "custom") the last call or trace
    of this layer took; None before the first call. See `keras_effconv.implementation`.
    `get_config()` holds every constructor argument, read from the attribute of the same name (the
    checked value), so a layer cannot forget one.
    """

    input_rank = 4
    resolved_implementation = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=self.input_rank)

    def set_keras_objects(self, **objects):
        """Stores `*_initializer`, `*_regularizer` and `activation` arguments through Keras' getters."""
        for name, value in objects.items():
            if name.endswith("_initializer"):
                value = keras.initializers.get(value)
            elif name.endswith("_regularizer"):
                value = keras.regularizers.get(value)
            else:
                value = keras.activations.get(value)
            setattr(self, name, value)

    def describe(self):
        return f"{type(self).__name__} {self.name!r}"

    def __call__(self, inputs, *args, **kwargs):
        dtype = getattr(inputs, "dtype", None)
        if dtype is not None and not keras.backend.is_float_dtype(dtype):
            raise ValueError(f"{self.describe()} expects a floating-point input; received dtype={dtype!s}")
        return super().__call__(inputs, *args, **kwargs)

    def input_channels(self, input_shape):
        """The known channel count of a rank-`input_rank` input; ValueError naming the layer otherwise."""
        shape = tuple(input_shape)
        if len(shape) != self.input_rank or shape[-1] is None:
            raise ValueError(
                f"{self.describe()} expects a rank-{self.input_rank} channels-last input with a known channel dim; "
                f"received input_shape={shape!r}"
            )
        return int(shape[-1])

    def check_channels(self, input_shape, expected):
        """Channels of a built layer's input must match what it was built for."""
        channels = self.input_channels(input_shape)
        if expected is not None and channels != expected:
            raise ValueError(
                f"{self.describe()} was built for {expected} input channels; received input_shape={tuple(input_shape)!r}"
            )
        return channels

    def resolve_path(self):
        """`implementation.resolve` for this layer's policy, recorded in `resolved_implementation`."""
        path = impl.resolve(self.implementation)
        self.resolved_implementation = path
        return path

    def get_config(self):
        config = super().get_config()
        config.update({name: serialize(getattr(self, name)) for name in constructor_arguments(type(self))})
        return config

    def finish_build(self, input_shape):
        """Pins the input spec to the built channel count (a later call with other channels is a ValueError)."""
        self.input_spec = keras.layers.InputSpec(ndim=self.input_rank, axes={-1: int(input_shape[-1])})


class ConvBase(Layer):
    """Common arguments, bias, output shape and `call` of the package's convolution layers (not registered).

    Subclasses set `spatial_rank` (2 or 3) and implement `convolution_op(x, path)`: the convolution
    without bias/activation on the resolved `path` ("reference" must be the obviously right one).
    """

    spatial_rank = 2

    @property
    def input_rank(self):
        return self.spatial_rank + 2

    def __init__(self, filters, kernel_size, strides=1, padding="same", dilation_rate=1, activation=None,
                 use_bias=True, bias_initializer="zeros", implementation="auto", **kwargs):
        super().__init__(**kwargs)
        rank = self.spatial_rank
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_tuple(kernel_size, rank, "kernel_size")
        self.strides = int_tuple(strides, rank, "strides")
        self.padding = check_padding(padding)
        self.dilation_rate = int_tuple(dilation_rate, rank, "dilation_rate")
        check_strides_dilation(self.strides, self.dilation_rate)
        self.activation = keras.activations.get(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.implementation = impl.validate_policy(implementation)

    def build_bias(self):
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)

    def call(self, inputs):
        y = self.convolution_op(tf.cast(inputs, self.compute_dtype), self.resolve_path())
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return self.activation(y) if self.activation is not None else y

    def convolution_op(self, x, path):
        raise NotImplementedError

    def cast(self, variable):
        return tf.cast(variable, self.compute_dtype)

    def output_spatial(self, input_shape):
        return pad.output_spatial(input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding, self)

    def static_sizes(self, input_shape):
        """Static (input, output) spatial sizes for MAC counting; ValueError if one is unknown."""
        spatial = tuple(input_shape[1:-1])
        if any(s is None for s in spatial):
            raise ValueError(f"`compute_macs` needs static spatial dims; received input_shape={tuple(input_shape)!r}")
        return spatial, self.output_spatial(input_shape)

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        return (input_shape[0],) + self.output_spatial(input_shape) + (self.filters,)
