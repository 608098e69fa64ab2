"""`keras.layers.BatchNormalization` with a fused training step (one FusedBatchNormV3 op).

Keras 3 computes training-mode BN as moments + normalize, ~2.2x slower fwd+bwd than the fused op
on this machine kind; on the CIFAR models the BN passes cost as much as the convs. This subclass
runs the training step of a 4-D channels-last input through `ops.batch_norm.batch_norm_train_fused`
and updates the moving statistics with Keras' own formula, and is Keras' layer everywhere else:
inference (so exports stay unchanged and builtins-only), other ranks or axes, masks, renorm,
synchronized BN, float64, and the "reference" policy all call `super().call`. Being a subclass,
`isinstance(layer, keras.layers.BatchNormalization)` holds (freezing, MAC counting, BN folding) and
its weights have Keras' names, so weight files of Keras-BN models load into it.
"""

import keras

from keras_effconv import implementation as impl
from keras_effconv.ops import batch_norm as bn_ops


@keras.saving.register_keras_serializable(package="keras_effconv")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization (same arguments) plus `implementation` ("auto", "reference", "fast").

    `resolved_implementation`: the path of the last training call or trace ("reference" when the
    fused op does not apply, else `implementation.resolve`'s "tf", "xla" or "custom"; the fused op
    runs on all three); None after an inference call, which is always Keras' own path.
    """

    resolved_implementation = None

    def __init__(self, *args, implementation="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.implementation = impl.validate_policy(implementation)

    def get_config(self):
        return {**super().get_config(), "implementation": self.implementation}

    def compute_macs(self, input_shape):
        """No multiply-accumulates (an element-wise scale and shift), as for Keras' BN."""
        return 0

    def fusable(self, inputs, mask=None):
        """True when the fused op computes this layer's training step (see the module docstring)."""
        return (
            bn_ops.fused_supported(inputs, self.epsilon) and self.axis in (-1, 3)
            and mask is None and not self.renorm and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            self.resolved_implementation = None
            return super().call(inputs, training=training, mask=mask)
        path = impl.resolve(self.implementation) if self.fusable(inputs, mask) else "reference"
        self.resolved_implementation = path
        if path == "reference":
            return super().call(inputs, training=training, mask=mask)
        y, mean, variance = bn_ops.batch_norm_train_fused(
            inputs, self.gamma if self.scale else None, self.beta if self.center else None, self.epsilon
        )
        moving_mean = keras.ops.cast(self.moving_mean, mean.dtype)
        moving_variance = keras.ops.cast(self.moving_variance, variance.dtype)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return keras.ops.cast(y, self.compute_dtype)


# Keras 3 `.weights.h5` files key a layer by its snake-cased class `__name__` ("batch_normalization_3"),
# not by its name. Keeping Keras' `__name__` lets weight files of models built with Keras' BN (the
# shipped presets, older checkpoints) load into models built with this layer, and the reverse. The
# class is still registered ("keras_effconv>FusedBatchNormalization"), imported and pickled
# (`__qualname__`) as FusedBatchNormalization.
FusedBatchNormalization.__name__ = "BatchNormalization"
