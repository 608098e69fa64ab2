"""Decoupled convolution, after Xie, Zhang, Yang, Lai and Wang, "Decoupled Convolutions for CNNs", AAAI 2018.

Our reading of the paper. A standard k_h x k_w convolution, y_o(p) = sum_q sum_i W[q, i, o] x_i(p + q),
is exactly the two steps

1. channel-domain step: a 1x1 convolution C_in -> K * C_out (K = k_h * k_w) giving one intermediate
   channel z_(o, q)(p) = sum_i W[q, i, o] x_i(p) per output channel o and kernel offset q;
2. spatial aggregation: each intermediate channel is filtered by its own k_h x k_w filter, which in
   the exact ("unrelaxed") form is one-hot at offset q, and the K channels of output o are summed.

The paper relaxes step 2 by *learning* the spatial filters (the "spatial configuration": a dense
k_h x k_w filter per intermediate channel instead of a fixed one-hot shift) and reduces the number of
intermediate channels M below K * C_out (each output sums M / C_out intermediate channels).

`DecoupledConv2D` executes: 1x1 conv C_in -> M, depthwise k_h x k_w conv on the M channels (stride,
dilation, padding of the layer), sum over the G = M / C_out groups (intermediate channel g * C_out + o
feeds output o), bias.
``spatial_configuration="fixed"`` freezes the spatial filters to the one-hot shifts (needs
M = K * C_out) and is then exactly a standard convolution; ``"learned"`` trains them.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_effconv.layers import _base
from keras_effconv.ops import conv as ops
from keras_effconv.ops.padding import shape_list

SPATIAL_CONFIGURATIONS = ("learned", "fixed")


def one_hot_spatial(kernel_size, filters):
    """(k_h, k_w, K * filters) spatial filters of the unrelaxed form: channel q*filters + o is one-hot at offset q."""
    area = math.prod(kernel_size)
    eye = np.eye(area, dtype="float32").reshape(tuple(kernel_size) + (area,))
    return np.repeat(eye, filters, axis=-1)


def unrelaxed_pointwise(kernel):
    """(C_in, K * C_out) pointwise matrix of the unrelaxed form of a (k_h, k_w, C_in, C_out) conv kernel."""
    kh, kw, cin, cout = kernel.shape
    return np.transpose(np.reshape(kernel, (kh * kw, cin, cout)), (1, 0, 2)).reshape(cin, kh * kw * cout)


@keras.saving.register_keras_serializable(package="keras_effconv")
class DecoupledConv2D(_base.ConvBase):
    """Decoupled 2-D convolution: 1x1 to M channels, per-channel spatial aggregation, group sum.

    intermediate_channels: M, a multiple of `filters`; None means K * filters (the unrelaxed count).
    spatial_configuration: "learned" (dense trainable k_h x k_w filter per intermediate channel) or
    "fixed" (one-hot shifts, the exact decoupling of a standard conv; needs M = K * filters).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", dilation_rate=1, intermediate_channels=None,
                 spatial_configuration="learned", activation=None, use_bias=True, bias_initializer="zeros",
                 implementation="auto", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias, bias_initializer,
                         implementation, **kwargs)
        full = math.prod(self.kernel_size) * self.filters
        if intermediate_channels is not None:
            _base.positive_int(intermediate_channels, "intermediate_channels")
            if intermediate_channels % self.filters:
                raise ValueError(
                    f"`intermediate_channels` must be a multiple of filters={self.filters}; "
                    f"received intermediate_channels={intermediate_channels!r}"
                )
        self.intermediate_channels = intermediate_channels
        self.spatial_configuration = _base.check_choice(spatial_configuration, SPATIAL_CONFIGURATIONS,
                                                     "spatial_configuration")
        if spatial_configuration == "fixed" and self.channels != full:
            raise ValueError(
                f"spatial_configuration='fixed' needs intermediate_channels={full} (k_h*k_w*filters); "
                f"received intermediate_channels={intermediate_channels!r}"
            )

    @property
    def channels(self):
        """M, the number of intermediate channels."""
        return self.intermediate_channels or math.prod(self.kernel_size) * self.filters

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        cin = self.input_channels(input_shape)
        group = self.channels // self.filters
        # Scaled so that `equivalent_kernel()` starts with the Glorot-uniform variance of a dense conv.
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel", shape=(cin, self.channels), initializer=self._scaled_initializer(cin, group)
        )
        if self.spatial_configuration == "fixed":
            self.spatial_kernel = self.add_weight(
                name="spatial_kernel", shape=self.kernel_size + (self.channels,), trainable=False,
                initializer=keras.initializers.Constant(one_hot_spatial(self.kernel_size, self.filters)),
            )
        else:
            self.spatial_kernel = self.add_weight(
                name="spatial_kernel", shape=self.kernel_size + (self.channels,),
                initializer=keras.initializers.RandomUniform(-1.0, 1.0),
            )
        self.build_bias()
        self.finish_build(input_shape)

    def _scaled_initializer(self, cin, group):
        """U(-a, a) for the pointwise kernel so `equivalent_kernel()` has the Glorot variance 2/(fan_in+fan_out)."""
        area = math.prod(self.kernel_size)
        target = 2.0 / (area * cin + area * self.filters)
        # fixed: each equivalent tap is one pointwise entry; learned: a sum of `group` products with U(-1, 1)
        variance = target if self.spatial_configuration == "fixed" else target / (group / 3.0)
        limit = float(np.sqrt(3.0 * variance))
        return keras.initializers.RandomUniform(-limit, limit)

    def convolution_op(self, x, path):
        if path == "reference":  # the composition is one conv with `equivalent_kernel()`
            return ops.conv(x, self.cast(self.equivalent_kernel()), self.strides, self.padding, self.dilation_rate)
        z = ops.pointwise(x, self.cast(self.pointwise_kernel))
        z = ops.depthwise_2d(z, self.cast(self.spatial_kernel), path, self.strides, self.padding, self.dilation_rate)
        dims = shape_list(z)
        # channel m = g * filters + o: summing over g reads contiguous blocks (3-4x faster than o-major here)
        return tf.reduce_sum(tf.reshape(z, dims[:-1] + [self.channels // self.filters, self.filters]), axis=-2)

    def equivalent_kernel(self):
        """The (k_h, k_w, C_in, filters) kernel of a standard conv equal to this layer (exact for any config).

        Sum_g pointwise[i, g*F + o] * spatial[u, v, g*F + o]: step 2 is linear, so the composition is a conv.
        """
        cin = self.pointwise_kernel.shape[0]
        group = self.channels // self.filters
        p = tf.reshape(self.pointwise_kernel, (cin, group, self.filters))
        s = tf.reshape(self.spatial_kernel, self.kernel_size + (group, self.filters))
        return tf.einsum("igo,uvgo->uvio", p, s)

    def compute_macs(self, input_shape):
        """H_in*W_in*C_in*M (1x1 at input resolution) + H_out*W_out*M*k_h*k_w; the group sum is adds only."""
        spatial, out = self.static_sizes(input_shape)
        cin = int(input_shape[-1])
        return math.prod(spatial) * cin * self.channels + math.prod(out) * self.channels * math.prod(self.kernel_size)

    @classmethod
    def from_conv(cls, conv_layer, spatial_configuration="fixed"):
        """The unrelaxed decoupling of a built keras Conv2D (groups=1): equal outputs; "learned" then fine-tunes."""
        if not isinstance(conv_layer, keras.layers.Conv2D) or not conv_layer.built or conv_layer.groups != 1:
            raise ValueError(f"`conv_layer` must be a built keras.layers.Conv2D with groups=1; received "
                             f"conv_layer={conv_layer!r}")
        kernel = keras.ops.convert_to_numpy(conv_layer.kernel)
        layer = cls(conv_layer.filters, conv_layer.kernel_size, conv_layer.strides, conv_layer.padding,
                    conv_layer.dilation_rate, spatial_configuration=spatial_configuration,
                    activation=conv_layer.activation, use_bias=conv_layer.use_bias, dtype=conv_layer.dtype_policy)
        layer.build((None, None, None, kernel.shape[2]))
        layer.pointwise_kernel.assign(unrelaxed_pointwise(kernel))
        layer.spatial_kernel.assign(one_hot_spatial(conv_layer.kernel_size, conv_layer.filters))
        if conv_layer.use_bias:
            layer.bias.assign(keras.ops.convert_to_numpy(conv_layer.bias))
        return layer
