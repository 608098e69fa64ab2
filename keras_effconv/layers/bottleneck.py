"""Spatial bottleneck: strided intra-channel conv -> projection at 1/factor^2 of the pixels ->
intra-channel deconvolution back to the input resolution.

The projection (dense or topological), its BatchNorm and activation run at the reduced resolution,
which is where the savings come from. For a fixed input size all shapes are static, so the TFLite
graph has no Shape/Pack ops.
"""

import keras
import tensorflow as tf

from keras_effconv.layers import _base
from keras_effconv.layers.intra_channel import IntraChannelConv2DTranspose
from keras_effconv.layers.sic import _ProjectedBlock


@keras.saving.register_keras_serializable(package="keras_effconv")
class SpatialBottleneck(_ProjectedBlock):
    """DW(stride=factor) -> act(BN(P)) at low resolution -> DW-transpose(stride=factor)."""

    def __init__(self, filters, factor=2, kernel_size=3, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.factor = _base.positive_int(factor, "factor")

    def build(self, input_shape):
        self.input_channels(input_shape)
        self.down = self._intra("down", strides=self.factor)
        self.down.build(input_shape)
        low = self.down.compute_output_shape(tuple(input_shape))
        self.projection = self._projection("proj", input_shape[-1])
        self.projection.build(low)
        self.batchnorm = self._batchnorm("bn")
        low = self.projection.compute_output_shape(low)
        if self.batchnorm is not None:
            self.batchnorm.build(low)
        self.up = IntraChannelConv2DTranspose(
            self.kernel_size, strides=self.factor, depthwise_initializer=self.depthwise_initializer,
            implementation=self.implementation, name="up", dtype=self.dtype_policy,
        )
        self.up.build(low)
        self.finish_build(input_shape)

    def call(self, inputs, training=None):
        self.resolve_path()
        y = self.activation(self._project(self.down(inputs), self.projection, self.batchnorm, training))
        y = self.up(y)
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:  # unknown size: crop to the dynamic input size
            shape = tf.shape(inputs)
            y = y[:, :shape[1], :shape[2], :]
        elif height % self.factor or width % self.factor:  # static crop: no Shape op in TFLite
            y = y[:, :height, :width, :]
        return y

    def compute_output_shape(self, input_shape):
        self.input_channels(input_shape)
        return (*input_shape[:-1], self.filters)

    def compute_macs(self, input_shape):
        if not self.built:
            self.build(input_shape)
        low = self.down.compute_output_shape(tuple(input_shape))
        projected = self.projection.compute_output_shape(low)
        return self.down.compute_macs(input_shape) + self.projection.compute_macs(low) + self.up.compute_macs(projected)
