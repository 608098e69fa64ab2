"""Optional C++ custom TensorFlow ops: a fused single intra-channel convolution step and the
topological projection.

Ops (float32, NHWC):

- ``TopologicalProjection(x[N,H,W,Cin], kernel[W_win,Cout], index[W_win,Cout] int32) -> y[N,H,W,Cout]``,
  ``y[n,h,w,o] = sum_k kernel[k,o] * x[n,h,w,index[k,o]]``: a 1x1 convolution in which every output
  channel reads only ``W_win`` input channels; the cost is proportional to the connections kept
  (on the 2-core AVX-512 machine it beats oneDNN's dense 1x1 conv from about 1/4 of the
  connections down; at 1/2 the dense conv is as fast or faster, see ``tools/bench_custom_ops.py``).
- ``FusedSICStep(x[N,H,W,C], dw[k,k,C], proj[C,C], scale[C], bias[C]) -> y``,
  ``y = relu(x + (depthwise_kxk_same(x, dw) @ proj) * scale + bias)`` (k odd, stride 1, zero
  padding; ``scale``/``bias`` are a folded BatchNorm). The CPU kernel works on tiles of rows: the
  depthwise result of a tile stays in a thread-local buffer, the CxC projection is one small GEMM on
  it and residual/bias/relu are applied on write-out, so the activation is read and written once.

Both have CPU kernels (sharded over the TF CPU worker threads, inner loops vectorised over the
contiguous channels) and CUDA kernels (``cc/effconv_kernels.cu.cc``, guarded by ``GOOGLE_CUDA``).
Gradients are registered here with ``tf.RegisterGradient`` and written with standard TF ops, so
training through the ops works (the backward pass is the composite one).

The library is compiled and cached on first use; how, and the environment variables that steer it,
are in `keras_effconv.ops.custom_build`.

When the ops are used
---------------------
Never by default. ``keras_effconv.implementation.enable_custom_ops()`` makes
``implementation.resolve()`` return ``"custom"`` on the TF runtime (not under XLA, not while
exporting), and the layers then call `fused_sic_step` / `topological_projection`. The exports of
`keras_effconv.export` (TFLite, SavedModel) trace under ``implementation.exporting()`` and always use
the composite path of standard TF ops (`fused_sic_step_reference`, `topological_projection_reference`
here are that composite), so those exports never depend on this library. Keras' own `model.export`
traces with the current policy: disable the ops (``enable_custom_ops(False)``) before calling it.
"""

import json
import threading
from pathlib import Path

import tensorflow as tf

from keras_effconv.ops.custom_build import CC_DIR  # noqa: F401 (public: where the sources are)
from keras_effconv.ops.custom_build import ENV_CACHE  # noqa: F401
from keras_effconv.ops.custom_build import ENV_CUDA  # noqa: F401
from keras_effconv.ops.custom_build import ENV_CUDA_ARCHS  # noqa: F401
from keras_effconv.ops.custom_build import ENV_CXX  # noqa: F401
from keras_effconv.ops.custom_build import ENV_CXXFLAGS  # noqa: F401
from keras_effconv.ops.custom_build import ENV_NVCC  # noqa: F401
from keras_effconv.ops.custom_build import CustomOpsError
from keras_effconv.ops.custom_build import _build_plan
from keras_effconv.ops.custom_build import _library_path
from keras_effconv.ops.custom_build import build_library
from keras_effconv.ops.custom_build import cache_dir
from keras_effconv.ops.custom_build import cuda_status  # noqa: F401
from keras_effconv.ops.custom_build import find_compiler  # noqa: F401

__all__ = [
    "CustomOpsError",
    "available",
    "build_info",
    "build_library",
    "cache_dir",
    "cuda_status",
    "find_compiler",
    "fused_sic_step",
    "fused_sic_step_reference",
    "load_custom_ops",
    "topological_dense_kernel",
    "topological_projection",
    "topological_projection_reference",
    "unavailable_reason",
]

# ------------------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------------------
_lock = threading.RLock()
_module = None
_library = None
_error = None


def _load(path):
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.OpError, OSError) as exc:
        msg = str(exc)
        hint = ""
        if "undefined symbol" in msg or "version" in msg.lower():
            hint = (f" This looks like a TensorFlow ABI mismatch: the library does not match the "
                    f"installed TensorFlow {tf.__version__}; delete {path} (or run "
                    f"tools/build_ops.py --force) to rebuild.")
        raise CustomOpsError(f"failed to load the op library {path}: {msg.strip()}{hint}") from exc


def load_custom_ops(rebuild=False):
    """Build if needed and load the op library; returns the module from ``tf.load_op_library``.

    Raises `CustomOpsError` (a RuntimeError) saying why it is unavailable. The result (or the error)
    is remembered for the process; ``rebuild=True`` forces a new build and load attempt.
    """
    global _module, _library, _error
    with _lock:
        if _module is not None and not rebuild:
            return _module
        if _error is not None and not rebuild:
            raise CustomOpsError(str(_error))
        try:
            path = build_library(force=rebuild)
            _module = _load(path)
            _library = path
            _error = None
        except CustomOpsError as exc:
            _error = exc
            raise
        return _module


def available(build=True):
    """True if the op library is loaded or can be built and loaded; never raises.

    With ``build=False`` only an already built (cached) library is loaded: nothing is compiled, so
    the call is cheap even the first time.
    """
    try:
        if not build and _module is None and _error is None:
            if not _library_path(_build_plan(), cache_dir()).exists():
                return False
        load_custom_ops()
        return True
    except Exception:  # pylint: disable=broad-except
        return False


def unavailable_reason():
    """Why `available()` is False (a string), or None when the library loads."""
    try:
        load_custom_ops()
        return None
    except Exception as exc:  # pylint: disable=broad-except
        return str(exc)


def build_info():
    """How the loaded library was built (compiler, flags, whether CUDA kernels are in it and why not)."""
    load_custom_ops()
    info_path = Path(_library).with_suffix(".json")
    info = {"path": str(_library)}
    if info_path.exists():
        with open(info_path, encoding="utf-8") as f:
            info.update(json.load(f))
    return info


# ------------------------------------------------------------------------------------------------
# Op wrappers and composite references
# ------------------------------------------------------------------------------------------------


@tf.autograph.experimental.do_not_convert
def _as_float32(*tensors):
    out = []
    for value in tensors:
        value = tf.convert_to_tensor(value)
        out.append(value if value.dtype == tf.float32 else tf.cast(value, tf.float32))
    return out


def topological_projection(x, kernel, index, name=None):
    """``y[..., o] = sum_k kernel[k, o] * x[..., index[k, o]]`` with the C++ op (NHWC).

    The kernel computes in float32; other float dtypes (mixed_float16) are cast in and out.
    """
    x = tf.convert_to_tensor(x)
    xf, kf = _as_float32(x, kernel)
    y = load_custom_ops().topological_projection(xf, kf, tf.cast(index, tf.int32), name=name)
    return tf.cast(y, x.dtype) if x.dtype != tf.float32 else y


def fused_sic_step(x, dw, proj, scale, bias, name=None):
    """``relu(x + (depthwise_same(x, dw) @ proj) * scale + bias)`` with the C++ op (NHWC).

    The kernel computes in float32; other float dtypes (mixed_float16) are cast in and out.
    """
    x = tf.convert_to_tensor(x)
    args = _as_float32(x, dw, proj, scale, bias)
    y = load_custom_ops().fused_sic_step(*args, name=name)
    return tf.cast(y, x.dtype) if x.dtype != tf.float32 else y


def topological_dense_kernel(kernel, index, cin):
    """The dense ``[cin, Cout]`` 1x1 kernel equivalent to a ``(kernel, index)`` table (duplicates add)."""
    kernel = tf.convert_to_tensor(kernel)
    index = tf.cast(index, tf.int32)
    cols = tf.broadcast_to(tf.range(tf.shape(index)[1])[tf.newaxis, :], tf.shape(index))
    positions = tf.reshape(tf.stack([index, cols], axis=-1), [-1, 2])
    shape = tf.stack([tf.cast(cin, tf.int32), tf.shape(kernel)[1]])
    return tf.scatter_nd(positions, tf.reshape(kernel, [-1]), shape)


def topological_projection_reference(x, kernel, index):
    """Composite (standard TF ops) `topological_projection`: a dense 1x1 conv with the scattered kernel."""
    x = tf.convert_to_tensor(x)
    dense = topological_dense_kernel(kernel, index, tf.shape(x)[-1])
    return tf.nn.conv2d(x, dense[tf.newaxis, tf.newaxis], strides=1, padding="VALID")


def fused_sic_step_reference(x, dw, proj, scale, bias):
    """Composite (standard TF ops) `fused_sic_step`: depthwise conv, 1x1 conv, scale, bias, add, relu."""
    x = tf.convert_to_tensor(x)
    z = tf.nn.depthwise_conv2d(x, tf.expand_dims(dw, -1), strides=[1, 1, 1, 1], padding="SAME")
    p = tf.nn.conv2d(z, proj[tf.newaxis, tf.newaxis], strides=1, padding="VALID")
    return tf.nn.relu(x + p * scale + bias)


# ------------------------------------------------------------------------------------------------
# Gradients (standard TF ops; registered by op name, so before the library is even loaded)
# ------------------------------------------------------------------------------------------------


def _topological_projection_grad(op, dy):
    x, kernel, index = op.inputs
    cin = tf.shape(x)[-1]
    cout = tf.shape(kernel)[1]
    dense = topological_dense_kernel(kernel, index, cin)  # [cin, cout]
    dy2 = tf.reshape(dy, [-1, cout])
    x2 = tf.reshape(x, [-1, cin])
    dx = tf.reshape(tf.matmul(dy2, dense, transpose_b=True), tf.shape(x))
    # dkernel[k, o] = sum_pixels dy[p, o] * x[p, index[k, o]] = (x^T dy)[index[k, o], o].
    gram_t = tf.matmul(dy2, x2, transpose_a=True)  # [cout, cin]
    dkernel = tf.transpose(tf.gather(gram_t, tf.transpose(index), batch_dims=1))
    return dx, dkernel, None


def _fused_sic_step_grad(op, dy):
    x, dw, proj, scale, bias = op.inputs
    y = op.outputs[0]
    del bias
    channels = tf.shape(x)[-1]
    g = tf.where(y > 0, dy, tf.zeros_like(dy))  # relu
    filt = tf.expand_dims(dw, -1)
    strides = [1, 1, 1, 1]
    z = tf.nn.depthwise_conv2d(x, filt, strides=strides, padding="SAME")  # recomputed
    z2 = tf.reshape(z, [-1, channels])
    g2 = tf.reshape(g, [-1, channels])
    dbias = tf.reduce_sum(g2, axis=0)
    dscale = tf.reduce_sum(g2 * tf.matmul(z2, proj), axis=0)
    gp = g2 * scale
    dproj = tf.matmul(z2, gp, transpose_a=True)
    dz = tf.reshape(tf.matmul(gp, proj, transpose_b=True), tf.shape(x))
    dx = g + tf.nn.depthwise_conv2d_backprop_input(tf.shape(x), filt, dz, strides, "SAME")
    dfilt = tf.nn.depthwise_conv2d_backprop_filter(x, tf.shape(filt), dz, strides, "SAME")
    return dx, tf.squeeze(dfilt, -1), dproj, dscale, dbias


for _name, _fn in (("TopologicalProjection", _topological_projection_grad),
                   ("FusedSICStep", _fused_sic_step_grad)):
    try:
        tf.RegisterGradient(_name)(_fn)
    except KeyError:  # already registered (module re-imported)
        pass
