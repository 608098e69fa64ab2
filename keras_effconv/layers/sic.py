"""Single intra-channel convolution (SIC), the paper's Algorithm 3.

`depth` sequential steps, each ``x <- act(x + BN(P . DW(x)))``: DW an intra-channel k x k
convolution, P a linear 1x1 projection (dense, or topological with `topology`). Two steps replace
one k x k convolution at a fraction of its cost.

When `filters` differs from the input channels or `strides` > 1, the first step has no shortcut
(``x <- act(BN(P . DW_strided(x)))``, like a MobileNet block): a projection shortcut would cost as
much as the step itself, and the following identity steps keep the residual path.

`topology` applies to every projection, or give a list with one entry (None = dense) per step,
e.g. ``[None, {'blocks': 4, 'band': 1}]``: a dense first step mixes all channels, a grouped
second step halves the cost without any channel gather.
"""

import keras

from keras_effconv import implementation as impl
from keras_effconv.layers import _base
from keras_effconv.layers.intra_channel import IntraChannelConv2D
from keras_effconv.layers.topological import TopologicalConv2D
from keras_effconv.ops import padding as pad


class _ProjectedBlock(_base.Layer):
    """Shared machinery: an intra-channel conv, a projection and an optional BatchNorm per step."""

    def __init__(
        self, filters, kernel_size=3, activation="relu", use_batchnorm=True, topology=None,
        momentum=0.99, epsilon=1e-3, depthwise_initializer="he_normal", kernel_initializer="he_normal",
        kernel_regularizer=None, implementation="auto", **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _base.positive_int(filters, "filters")
        self.kernel_size = _base.int_tuple(kernel_size, 2, "kernel_size")
        self.use_batchnorm = _base.check_bool(use_batchnorm, "use_batchnorm")
        self.topology = _base.check_topology(topology)
        self.momentum = _base.check_number(momentum, "momentum", 0, 1)
        self.epsilon = _base.check_number(epsilon, "epsilon", 0)
        self.set_keras_objects(activation=activation, depthwise_initializer=depthwise_initializer,
                               kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer)
        self.implementation = impl.validate_policy(implementation)

    def _intra(self, name, **kwargs):
        return IntraChannelConv2D(
            self.kernel_size, depthwise_initializer=self.depthwise_initializer,
            implementation=self.implementation, name=name, dtype=self.dtype_policy, **kwargs,
        )

    def _projection(self, name, in_channels, step=0):
        layout, neighborhood = _base.layout_for(self.topology, in_channels, step)
        return TopologicalConv2D(
            self.filters, 1, layout=layout, neighborhood=neighborhood, use_bias=not self.use_batchnorm,
            kernel_initializer=self.kernel_initializer, kernel_regularizer=self.kernel_regularizer,
            implementation=self.implementation, name=name, dtype=self.dtype_policy,
        )

    def _batchnorm(self, name):
        if not self.use_batchnorm:
            return None
        return _base.make_batchnorm(name, self.momentum, self.epsilon, self.dtype_policy)

    def _project(self, z, projection, bn, training):
        """BN(P . z). BatchNorm stays its own op: grappler fuses it with the conv on the TF runtime,
        XLA fuses it into the conv's output loop, and the TFLite converter folds it into the kernel."""
        y = projection(z)
        return y if bn is None else bn(y, training=training)


@keras.saving.register_keras_serializable(package="keras_effconv")
class SIConv2D(_ProjectedBlock):
    """SIC layer: `depth` steps of x <- act(x + BN(P . DW(x))) (see module docstring)."""

    def __init__(self, filters, kernel_size=3, strides=1, depth=2, padding="same", dilation_rate=1, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.strides = _base.int_tuple(strides, 2, "strides")
        self.depth = _base.positive_int(depth, "depth")
        self.padding = _base.check_padding(padding, allowed=("same",))
        self.dilation_rate = _base.int_tuple(dilation_rate, 2, "dilation_rate")

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        in_channels = self.input_channels(input_shape)
        self.first_shortcut = in_channels == self.filters and self.strides == (1, 1)
        self.intras, self.projections, self.batchnorms = [], [], []
        shape = tuple(input_shape)
        for i in range(self.depth):
            intra = self._intra(f"dw{i}", strides=self.strides if i == 0 else 1, dilation_rate=self.dilation_rate)
            projection = self._projection(f"proj{i}", shape[-1], i)
            bn = self._batchnorm(f"bn{i}")
            intra.build(shape)
            shape = intra.compute_output_shape(shape)
            projection.build(shape)
            shape = projection.compute_output_shape(shape)
            self.intras.append(intra)
            self.projections.append(projection)
            if bn is not None:
                bn.build(shape)
                self.batchnorms.append(bn)
        self.finish_build(input_shape)

    def _steps(self):
        bns = self.batchnorms or [None] * self.depth
        return zip(self.intras, self.projections, bns)

    def _fusable(self, i, projection, bn, training, path):
        """Inference identity steps with a dense projection, BN and ReLU run as one C++ op."""
        return (
            not training and bn is not None and (i > 0 or self.first_shortcut) and projection.topology.window ==
            projection.topology.in_channels and self.activation is keras.activations.relu
            and self.dilation_rate == (1, 1) and self.kernel_size[0] == self.kernel_size[1]
            and self.kernel_size[0] % 2 == 1 and path == "custom"
        )

    def call(self, inputs, training=None):
        x, path = inputs, self.resolve_path()
        for i, (intra, projection, bn) in enumerate(self._steps()):
            if self._fusable(i, projection, bn, training, path):
                from keras_effconv.ops import custom

                scale, bias = _base.batchnorm_scale_bias(bn, self.compute_dtype)
                x = custom.fused_sic_step(x, intra.kernel[:, :, :, 0], projection.dense_kernel_tensor()[0, 0],
                                          scale, bias)
                continue
            y = self._project(intra(x), projection, bn, training)
            x = self.activation(x + y if (i > 0 or self.first_shortcut) else y)
        return x

    def compute_output_shape(self, input_shape):
        # Only the first step is strided; the "same" steps after it keep the size.
        self.input_channels(input_shape)
        return pad.conv_output_shape(input_shape, self.kernel_size, self.strides, self.dilation_rate,
                                     self.padding, self.filters, self)

    def compute_macs(self, input_shape):
        if not self.built:
            self.build(input_shape)
        total, shape = 0, tuple(input_shape)
        for intra, projection, _ in self._steps():
            total += intra.compute_macs(shape)
            shape = intra.compute_output_shape(shape)
            total += projection.compute_macs(shape)
            shape = projection.compute_output_shape(shape)
        return total
