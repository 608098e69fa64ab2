"""EffConv2D: a `keras.layers.Conv2D` stand-in built from the paper's schemes.

It takes Conv2D's leading arguments (filters, kernel_size, strides, padding, dilation_rate, activation,
use_bias, kernel/bias initializers, kernel_regularizer) with the same meaning, except:
- `padding` defaults to "same" (Conv2D: "valid"), and the SIC and bottleneck structures accept only "same";
- there is no `data_format` (channels-last only), `groups`, `bias_regularizer`, `activity_regularizer`,
  `kernel_constraint` or `bias_constraint`;
- the weights are those of the chosen structure, not one (kh, kw, C_in, filters) kernel.

One switch picks the structure: `sic=True` (default) -> SIConv2D; `bottleneck=True` (with
`sic=False`) -> SpatialBottleneck; neither -> a k x k TopologicalConv2D (dense without `topology`).
`topology` applies to the projections (or to the k x k conv) of whichever structure is chosen.
`activation` and `use_bias` act on the output, as in Conv2D.
"""

import keras
import tensorflow as tf

from keras_effconv import implementation as impl
from keras_effconv.layers import _base
from keras_effconv.layers.bottleneck import SpatialBottleneck
from keras_effconv.layers.sic import SIConv2D
from keras_effconv.layers.topological import TopologicalConv2D


@keras.saving.register_keras_serializable(package="keras_effconv")
class EffConv2D(_base.Layer):
    """A Conv2D stand-in: SIC, spatial bottleneck or topological k x k (see the module docstring for what differs)."""

    def __init__(
        self, filters, kernel_size, strides=1, padding="same", dilation_rate=1, activation=None,
        use_bias=True, sic=True, topology=None, bottleneck=False, depth=2, bottleneck_factor=2,
        kernel_initializer="he_normal", bias_initializer="zeros", kernel_regularizer=None,
        implementation="auto", **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _base.positive_int(filters, "filters")
        self.kernel_size = _base.int_tuple(kernel_size, 2, "kernel_size")
        self.strides = _base.int_tuple(strides, 2, "strides")
        self.padding = _base.check_padding(padding)
        self.dilation_rate = _base.int_tuple(dilation_rate, 2, "dilation_rate")
        self.use_bias = _base.check_bool(use_bias, "use_bias")
        self.sic = _base.check_bool(sic, "sic")
        self.topology = _base.check_topology(topology)
        self.bottleneck = _base.check_bool(bottleneck, "bottleneck")
        self.depth = _base.positive_int(depth, "depth")
        self.bottleneck_factor = _base.positive_int(bottleneck_factor, "bottleneck_factor")
        self.set_keras_objects(activation=activation, kernel_initializer=kernel_initializer,
                               bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer)
        self.implementation = impl.validate_policy(implementation)
        if self.sic and self.bottleneck:
            raise ValueError("`sic` and `bottleneck` are alternative structures: set one; received sic=True, bottleneck=True")
        if (self.sic or self.bottleneck) and self.padding != "same":
            raise ValueError(f"SIC and bottleneck structures need padding='same'; received padding={padding!r}")
        if self.bottleneck and self.strides != (1, 1):
            raise ValueError(f"`bottleneck=True` keeps the resolution and needs strides=1; received strides={strides!r}")

    def build(self, input_shape):
        self.input_channels(input_shape)
        common = dict(kernel_initializer=self.kernel_initializer, kernel_regularizer=self.kernel_regularizer,
                      implementation=self.implementation, dtype=self.dtype_policy)
        if self.sic:
            self.inner = SIConv2D(self.filters, self.kernel_size, self.strides, self.depth,
                                  dilation_rate=self.dilation_rate, topology=self.topology, name="sic", **common)
        elif self.bottleneck:
            self.inner = SpatialBottleneck(self.filters, self.bottleneck_factor, self.kernel_size,
                                           topology=self.topology, name="bottleneck", **common)
        else:
            layout, neighborhood = _base.layout_for(self.topology, input_shape[-1])
            self.inner = TopologicalConv2D(self.filters, self.kernel_size, layout, neighborhood, self.strides,
                                           self.padding, self.dilation_rate, name="conv", **common)
        self.inner.build(input_shape)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer) if self.use_bias else None
        self.finish_build(input_shape)

    def call(self, inputs, training=None):
        kwargs = {} if isinstance(self.inner, TopologicalConv2D) else {"training": training}
        y = self.inner(inputs, **kwargs)
        self.resolved_implementation = self.inner.resolved_implementation
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        if not self.built:
            self.build(input_shape)
        return self.inner.compute_output_shape(input_shape)

    def compute_macs(self, input_shape):
        if not self.built:
            self.build(input_shape)
        return self.inner.compute_macs(input_shape)
