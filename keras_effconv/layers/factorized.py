"""Factorized N-D convolutions (CP, Tucker, tensor-train), after Kossaifi et al., arXiv:1906.06196.

The kernel W (k_1..k_N, C_in, C_out) is held as factors:

- ``"cp"``, rank R: W = sum_r U_in[:, r] o U_1[:, r] o ... o U_N[:, r] o U_out[r, :].
- ``"tucker"``, ranks (R_in, R_out) (Tucker-2, channel modes): W = core x_in U_in x_out U_out,
  core (k_1..k_N, R_in, R_out).
- ``"tt"``, ranks (R_1..R_{N+1}): tensor train over (C_in, k_1, ..., k_N, C_out),
  cores U_in (C_in, R_1), G_d (R_d, k_d, R_{d+1}), U_out (R_{N+1}, C_out).

``execution`` (what the fast path runs): ``"reconstructed"`` rebuilds W and runs one convolution;
``"factorized"`` runs the chain of small convolutions (CP: 1x1, one depthwise 1-D conv per spatial axis,
1x1; Tucker: 1x1, core conv, 1x1; TT: 1x1, one dense 1-D conv per spatial axis, 1x1); ``"mobilenet"``
(CP only) runs 1x1, a depthwise k_1 x ... x k_N conv whose per-channel kernel is the rank-1 product of
the spatial factors, and 1x1. All three compute the same function of the same factors.

``implementation`` is the package-wide auto/reference/fast policy (`keras_effconv.implementation`): the
reference path is one dense convolution with the reconstructed kernel, whatever the execution.
Configs saved before the rename (``implementation="factorized"`` etc.) still load.
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_effconv.layers import _base
from keras_effconv.ops import conv as ops

FACTORIZATIONS = ("cp", "tucker", "tt")
EXECUTIONS = ("factorized", "reconstructed", "mobilenet")


def normalize_rank(rank, factorization, n):
    """`rank` as a tuple: (R,) for CP, (R_in, R_out) for Tucker, (R_1..R_{n+1}) for TT."""
    length = {"cp": 1, "tucker": 2, "tt": n + 1}[factorization]
    try:
        return _base.int_tuple(rank, length, "rank")
    except ValueError:
        raise ValueError(
            f"`rank` must be a positive int or a tuple of {length} positive ints for "
            f"factorization={factorization!r}; received rank={rank!r}"
        ) from None


def _axis_args(layer, d):
    """(strides, dilation) of spatial axis `d` as the 2-D arguments of a (k, 1) conv."""
    return (layer.strides[d], 1), (layer.dilation_rate[d], 1)


def _cp_spatial(factors):
    """(k_1..k_N, R) per-rank outer products of the (k_d, R) spatial factors (broadcasts: TFLite-friendly)."""
    n = len(factors)
    out = None
    for d, u in enumerate(factors):
        u = tf.reshape(u, [1] * d + [u.shape[0]] + [1] * (n - d - 1) + [u.shape[1]])
        out = u if out is None else out * u
    return out


class _FactorizedConv(_base.ConvBase):
    """Shared N-D implementation; see the module docstring."""

    spatial_rank = None
    conv_class = None

    def __init__(self, filters, kernel_size, rank, factorization="cp", execution="factorized", strides=1,
                 padding="same", dilation_rate=1, activation=None, use_bias=True, bias_initializer="zeros",
                 seed=None, implementation="auto", **kwargs):
        if implementation in EXECUTIONS:  # a config saved when `implementation` named the execution
            execution, implementation = implementation, "auto"
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias, bias_initializer,
                         implementation, **kwargs)
        self.factorization = _base.check_choice(factorization, FACTORIZATIONS, "factorization")
        self.execution = _base.check_choice(execution, EXECUTIONS, "execution")
        if execution == "mobilenet" and factorization != "cp":
            raise ValueError(
                "execution='mobilenet' needs factorization='cp'; "
                f"received execution={execution!r}, factorization={factorization!r}"
            )
        self.rank = normalize_rank(rank, factorization, self.spatial_rank)
        if seed is not None and not _base.is_int(seed):
            raise ValueError(f"`seed` must be None or an int; received seed={seed!r}")
        self.seed = seed

    def _factor_shapes(self, cin):
        """[(name, shape)] of the factors and the product of the contracted ranks."""
        k, r, n = self.kernel_size, self.rank, self.spatial_rank
        if self.factorization == "cp":
            shapes = [("cp_input", (cin, r[0]))] + [(f"cp_spatial_{d}", (k[d], r[0])) for d in range(n)]
            return shapes + [("cp_output", (r[0], self.filters))], r[0]
        if self.factorization == "tucker":
            shapes = [("tucker_input", (cin, r[0])), ("tucker_core", k + r), ("tucker_output", (r[1], self.filters))]
            return shapes, r[0] * r[1]
        shapes = [("tt_input", (cin, r[0]))] + [(f"tt_spatial_{d}", (r[d], k[d], r[d + 1])) for d in range(n)]
        return shapes + [("tt_output", (r[-1], self.filters))], math.prod(r)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        cin = self.input_channels(input_shape)
        shapes, contracted = self._factor_shapes(cin)
        area = math.prod(self.kernel_size)
        std = _base.scaled_normal_std(area * cin, area * self.filters, contracted, len(shapes))
        self.factors = []
        for i, (name, shape) in enumerate(shapes):
            seed = None if self.seed is None else self.seed + i
            init = keras.initializers.RandomNormal(stddev=std, seed=seed)
            self.factors.append(self.add_weight(name=name, shape=shape, initializer=init))
        self.build_bias()
        self.finish_build(input_shape)

    def reconstruct_kernel(self):
        """The full (k_1..k_N, C_in, C_out) kernel the factors represent, in the compute dtype."""
        f = [self.cast(v) for v in self.factors]
        n = self.spatial_rank
        if self.factorization == "cp":  # (k.., 1, R) * (C_in, R) -> (k.., C_in, R), then @ (R, C_out)
            return tf.tensordot(_cp_spatial(f[1:-1])[..., None, :] * f[0], f[-1], axes=1)
        if self.factorization == "tucker":  # (C_in, R_in) @ (k.., R_in, C_out)
            return tf.linalg.matmul(f[0], tf.tensordot(f[1], f[2], axes=1))
        t = f[0]
        for core in f[1:]:
            t = tf.tensordot(t, core, axes=1)
        return tf.transpose(t, list(range(1, n + 1)) + [0, n + 1])

    def convolution_op(self, x, path):
        if path == "reference" or self.execution == "reconstructed":
            return ops.conv(x, self.reconstruct_kernel(), self.strides, self.padding, self.dilation_rate)
        f = [self.cast(v) for v in self.factors]
        if self.execution == "mobilenet":
            spatial = _cp_spatial(f[1:-1])
            y = ops.depthwise_nd(ops.pointwise(x, f[0]), spatial, path, self.strides, self.padding,
                                 self.dilation_rate)
        elif self.factorization == "tucker":
            y = ops.conv(ops.pointwise(x, f[0]), f[1], self.strides, self.padding, self.dilation_rate)
        else:
            y = ops.pointwise(x, f[0])
            for d in range(self.spatial_rank):
                y = ops.along_axis(y, d + 1, self._axis_op(f[1 + d], d, path))
        return ops.pointwise(y, f[-1])

    def _axis_op(self, factor, d, path):
        strides, dilation = _axis_args(self, d)
        if self.factorization == "cp":  # (k, R) depthwise
            return lambda t: ops.depthwise_2d(t, factor[:, None, :], path, strides, self.padding, dilation)
        kernel = tf.transpose(factor, (1, 0, 2))[:, None]  # (R_d, k, R_d+1) -> (k, 1, R_d, R_d+1)
        return lambda t: ops.conv(t, kernel, strides, self.padding, dilation)

    def compute_macs(self, input_shape):
        """MACs per example of the fast path's `execution` (kernel reconstruction is per batch, not counted)."""
        spatial, out = self.static_sizes(input_shape)
        cin, cout, k, r = int(input_shape[-1]), self.filters, self.kernel_size, self.rank
        s_in, s_out, area = math.prod(spatial), math.prod(out), math.prod(k)
        if self.execution == "reconstructed":
            return s_out * area * cin * cout
        if self.execution == "mobilenet":
            return s_in * cin * r[0] + s_out * area * r[0] + s_out * r[0] * cout
        if self.factorization == "tucker":
            return s_in * cin * r[0] + s_out * area * r[0] * r[1] + s_out * r[1] * cout
        macs, ranks = s_in * cin * r[0], (r * (self.spatial_rank + 1) if self.factorization == "cp" else r)
        for d in range(self.spatial_rank):
            size = math.prod(out[: d + 1]) * math.prod(spatial[d + 1:])
            macs += size * k[d] * (ranks[d] if self.factorization == "cp" else ranks[d] * ranks[d + 1])
        return macs + s_out * ranks[-1] * cout

    @classmethod
    def from_conv(cls, conv_layer, rank, factorization="cp", execution="factorized", n_iter_max=500,
                  random_state=0):
        """A factorized layer initialised by decomposing a built keras Conv layer's kernel with tensorly.

        Tucker and TT (SVD based) are exact at full ranks; CP is fitted by ALS (`n_iter_max`, `random_state`).
        Ranks beyond what the kernel needs are clipped (Tucker/TT: matricization ranks; CP: size / largest mode).
        """
        if not isinstance(conv_layer, cls.conv_class):
            raise ValueError(
                f"`conv_layer` must be a built keras.layers.{cls.conv_class.__name__}; received "
                f"conv_layer={conv_layer!r}"
            )
        if not conv_layer.built or conv_layer.groups != 1 or conv_layer.data_format != "channels_last":
            raise ValueError(
                "`conv_layer` must be built, channels_last and have groups=1; received "
                f"conv_layer={conv_layer.name!r} (built={conv_layer.built}, groups={conv_layer.groups}, "
                f"data_format={conv_layer.data_format!r})"
            )
        n = cls.spatial_rank
        rank = normalize_rank(rank, _base.check_choice(factorization, FACTORIZATIONS, "factorization"), n)
        kernel = np.asarray(keras.ops.convert_to_numpy(conv_layer.kernel), dtype=np.float64)
        factors = _check_finite(_decompose(kernel, rank, factorization, n_iter_max, random_state))
        rank = tuple(_ranks_of(factors, factorization, n))
        layer = cls(conv_layer.filters, conv_layer.kernel_size, rank, factorization, execution,
                    strides=conv_layer.strides, padding=conv_layer.padding, dilation_rate=conv_layer.dilation_rate,
                    activation=conv_layer.activation, use_bias=conv_layer.use_bias, dtype=conv_layer.dtype_policy)
        layer.build((None,) * (n + 1) + (kernel.shape[-2],))
        for variable, value in zip(layer.factors, factors):
            variable.assign(value.astype(variable.dtype))
        if conv_layer.use_bias:
            layer.bias.assign(keras.ops.convert_to_numpy(conv_layer.bias))
        return layer


def _decompose(kernel, rank, factorization, n_iter_max, random_state):
    """Factors (numpy, in the layer's variable order) of a (k.., C_in, C_out) kernel."""
    import tensorly as tl
    from tensorly import decomposition

    tl.set_backend("numpy")
    with warnings.catch_warnings():  # tensorly warns when it clips an SVD to the matrix size
        warnings.simplefilter("ignore", UserWarning)
        return _run_decomposition(decomposition, kernel, rank, factorization, n_iter_max, random_state)


def _run_decomposition(decomposition, kernel, rank, factorization, n_iter_max, random_state):
    n = kernel.ndim - 2
    cin, cout = kernel.shape[-2:]
    if factorization == "cp":
        # CP rank <= size / largest mode always suffices; beyond it ALS's normal equations are singular.
        weights, f = decomposition.parafac(kernel, rank=min(rank[0], kernel.size // max(kernel.shape)), init="svd",
                                           n_iter_max=n_iter_max, tol=1e-12, random_state=random_state)
        return [f[n]] + list(f[:n]) + [(f[n + 1] * weights[None, :]).T]
    if factorization == "tucker":
        ranks = [min(rank[0], cin), min(rank[1], cout)]
        (core, (u_in, u_out)), _ = decomposition.partial_tucker(kernel, rank=ranks, modes=[n, n + 1])
        return [u_in, core, u_out.T]
    moved = np.moveaxis(kernel, n, 0)  # (C_in, k_1..k_N, C_out)
    cores = decomposition.tensor_train(moved, rank=[1] + list(rank) + [1]).factors
    return [cores[0][0]] + list(cores[1:-1]) + [cores[-1][..., 0]]


def _check_finite(factors):
    if not all(np.all(np.isfinite(f)) for f in factors):
        raise ValueError("decomposition diverged (non-finite factors); try a smaller `rank` or another `random_state`")
    return factors


def _ranks_of(factors, factorization, n):
    if factorization == "cp":
        return [factors[0].shape[1]]
    if factorization == "tucker":
        return [factors[1].shape[-2], factors[1].shape[-1]]
    return [factors[0].shape[1]] + [g.shape[2] for g in factors[1:-1]]


@keras.saving.register_keras_serializable(package="keras_effconv")
class FactorizedConv2D(_FactorizedConv):
    """2-D convolution with a CP / Tucker / TT factorized kernel (Kossaifi et al., arXiv:1906.06196).

    rank: int or tuple -- CP: R; Tucker: (R_in, R_out); TT: (R_1, R_2, R_3).
    execution: "factorized" (chain of small convs), "reconstructed" (one conv with the rebuilt kernel)
    or "mobilenet" (CP only: 1x1, depthwise kxk, 1x1). implementation: "auto" / "reference" / "fast".
    """

    spatial_rank = 2
    conv_class = keras.layers.Conv2D


@keras.saving.register_keras_serializable(package="keras_effconv")
class FactorizedConv3D(_FactorizedConv):
    """3-D convolution with a CP / Tucker / TT factorized kernel; see `FactorizedConv2D`.

    rank: CP: R; Tucker: (R_in, R_out); TT: (R_1..R_4).
    """

    spatial_rank = 3
    conv_class = keras.layers.Conv3D
