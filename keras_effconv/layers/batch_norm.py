"""`keras.layers.BatchNormalization` whose steps on the TF runtime are one FusedBatchNormV3 op.

Keras 3 computes BN as composites: training as moments + normalize, ~2.2x slower fwd+bwd than the
fused op on this machine kind, and inference as two element-wise passes that grappler cannot fold
into the conv before them. For a 4-D channels-last input this subclass runs
- training through `ops.batch_norm.batch_norm_train_fused`, updating the moving statistics with
  Keras' own formula (also under XLA, where the fused op compiles);
- inference through `ops.batch_norm.batch_norm_infer_fused` on the TF runtime only.
Everything else is Keras' layer: inference under XLA and while exporting (`implementation.exporting()`,
so TFLite/SavedModel exports keep Keras' builtins-only ops), other ranks or axes, masks, renorm,
synchronized BN, float64 and the "reference" policy call `super().call`. Being a subclass,
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
    runs on all three); None after an inference call (the training path is what the harness checks).
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

    def _affine(self):
        """(gamma, beta), None for the ones the layer does not learn (scale=False / center=False)."""
        return self.gamma if self.scale else None, self.beta if self.center else None

    def _fuse_inference(self, inputs, mask):
        """Inference through the fused op on the TF runtime only: XLA fuses Keras' composite itself,
        and exports (`implementation.exporting()`) keep Keras' ops, so they stay as before."""
        if impl.is_exporting() or not self.fusable(inputs, mask):
            return False
        return impl.resolve(self.implementation) in ("tf", "custom")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            self.resolved_implementation = None
            if self._fuse_inference(inputs, mask):
                y = bn_ops.batch_norm_infer_fused(
                    inputs, *self._affine(), self.moving_mean, self.moving_variance, self.epsilon
                )
                return keras.ops.cast(y, self.compute_dtype)
            return super().call(inputs, training=training, mask=mask)
        path = impl.resolve(self.implementation) if self.fusable(inputs, mask) else "reference"
        self.resolved_implementation = path
        if path == "reference":
            return super().call(inputs, training=training, mask=mask)
        y, mean, variance = bn_ops.batch_norm_train_fused(inputs, *self._affine(), self.epsilon)
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
