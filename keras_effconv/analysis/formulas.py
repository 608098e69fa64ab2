"""MAC formulas for Keras built-in layers and ops, from recorded input/output shapes.

Shapes include the leading (batch) dim as recorded; `None` counts as 1. Formulas multiply by it, so a
layer applied to a reshaped batch (e.g. inside `TimeDistributed`) is counted once per position.
Biases, BN, pooling, activations and element-wise merges are not MACs: they count 0.
"""

import math

import keras

from keras_effconv.analysis.profile import SOURCE_KERAS
from keras_effconv.analysis.profile import SOURCE_ZERO

# Keras layer modules whose layers do no multiply-accumulates.
_ZERO_MODULES = (
    "keras.src.layers.pooling.",
    "keras.src.layers.normalization.",
    "keras.src.layers.activations.",
    "keras.src.layers.regularization.",
    "keras.src.layers.reshaping.",
    "keras.src.layers.preprocessing.",
    "keras.src.layers.core.input_layer",
    "keras.src.layers.core.identity",
    "keras.src.layers.core.embedding",  # a lookup
    "keras.src.layers.core.masking",
)
# Merges other than `Dot` are element-wise.
_ZERO_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")
# Functional-API ops (`keras.ops.*` on symbolic tensors) that are element-wise or data movement.
_ZERO_OPS = frozenset(
    "Add Subtract Multiply Divide TrueDivide Negative Abs Square Sqrt Exp Log Maximum Minimum Clip "
    "Reshape Transpose Concatenate Stack Squeeze ExpandDims Flatten GetItem Cast Mean Sum Max Min "
    "Relu Relu6 Sigmoid HardSigmoid Silu HardSilu Swish HardSwish Gelu Tanh Softmax LogSoftmax "
    "Where Pad Tile Repeat Slice Split BroadcastTo Identity StopGradient ConvertToTensor".split()
)


def _dims(shape, what="shape"):
    """Shape as a tuple of ints; the leading dim `None -> 1`; any other `None` is an error."""
    shape = tuple(shape)
    if not shape:
        return shape
    dims = (1 if shape[0] is None else int(shape[0]),) + shape[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"Cannot count MACs with an unknown dimension in {what} {shape}: pass a fully defined "
            "`input_shape`."
        )
    return tuple(int(d) for d in dims)


def _split(shape, data_format):
    """`(batch, spatial dims, channels)` for channels_last / channels_first shapes."""
    if data_format == "channels_first":
        return shape[0], shape[2:], shape[1]
    return shape[0], shape[1:-1], shape[-1]


def _conv(layer, x, y):
    batch, _, cin = _split(x, layer.data_format)
    _, out_spatial, _ = _split(_dims(y, f"the output of {layer.name!r}"), layer.data_format)
    groups = getattr(layer, "groups", 1) or 1
    k = math.prod(layer.kernel_size)
    return batch * math.prod(out_spatial) * layer.filters * k * (cin // groups)


def _conv_transpose(layer, x, y):
    # Each input pixel scatters a k*k*Cout patch: MACs = input pixels * k*k * Cin * Cout / groups.
    batch, in_spatial, cin = _split(x, layer.data_format)
    groups = getattr(layer, "groups", 1) or 1
    k = math.prod(layer.kernel_size)
    return batch * math.prod(in_spatial) * k * cin * layer.filters // groups


def _depthwise(layer, x, y):
    batch, _, cin = _split(x, layer.data_format)
    _, out_spatial, _ = _split(_dims(y, f"the output of {layer.name!r}"), layer.data_format)
    k = math.prod(layer.kernel_size)
    return batch * math.prod(out_spatial) * cin * layer.depth_multiplier * k


def _separable(layer, x, y):
    batch, _, cin = _split(x, layer.data_format)
    _, out_spatial, _ = _split(_dims(y, f"the output of {layer.name!r}"), layer.data_format)
    mid = cin * layer.depth_multiplier
    k = math.prod(layer.kernel_size)
    return batch * math.prod(out_spatial) * mid * (k + layer.filters)


def _dense(layer, x, y):
    # Applied per position over all leading dims of a >2-D input.
    return math.prod(x[:-1]) * x[-1] * layer.units


def einsum_macs(equation, operand_shapes):
    """MACs of an einsum: the product of the sizes of all its indices (kept and summed over)."""
    lhs = equation.replace(" ", "").split("->")[0]
    sizes, ellipsis = {}, ()
    for spec, shape in zip(lhs.split(","), operand_shapes):
        shape = tuple(shape)
        if "..." in spec:
            head, tail = spec.split("...")
            middle = shape[len(head) : len(shape) - len(tail)]
            width = max(len(middle), len(ellipsis))  # broadcast, right-aligned
            a = (1,) * (width - len(ellipsis)) + ellipsis
            b = (1,) * (width - len(middle)) + middle
            ellipsis = tuple(max(x, y) for x, y in zip(a, b))
            shape = shape[: len(head)] + shape[len(shape) - len(tail) :]
            spec = head + tail
        for letter, size in zip(spec, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return math.prod(sizes.values()) * math.prod(ellipsis)


def _einsum_dense(layer, x, y):
    kernel_shape = tuple(int(d) for d in layer.kernel.shape)
    return einsum_macs(layer.equation, [x, kernel_shape])


def _dot(layer, x, y):
    axes = layer.axes
    axis = axes[0] if isinstance(axes, (list, tuple)) else axes
    if axis < 0:
        axis += len(x)
    return math.prod(_dims(y, f"the output of {layer.name!r}")) * x[axis]


def attention_macs(layer, in_shapes):
    """MACs of `MultiHeadAttention`'s two einsums (scores and context), which are not sublayers.

    The q/k/v/output projections are `EinsumDense` sublayers and are counted through them.
    """
    query = _dims(in_shapes[0], f"the query of {layer.name!r}")
    value = _dims(in_shapes[1] if len(in_shapes) > 1 else in_shapes[0], f"the value of {layer.name!r}")
    rank = len(query)  # (batch, *dims, features)
    axes = getattr(layer, "_attention_axes", None) or tuple(range(1, rank - 1))
    axes = [a % (rank + 1) for a in axes]  # indices into the projected (batch, *dims, heads, dim)
    outer = math.prod(query[a] for a in range(rank - 1) if a not in axes)  # incl. batch
    q_len = math.prod(query[a] for a in axes)
    k_len = math.prod(value[a] for a in axes)
    heads = layer.num_heads
    key_dim = layer.key_dim
    value_dim = getattr(layer, "value_dim", None) or key_dim
    return outer * heads * q_len * k_len * (key_dim + value_dim)


def _layer_formulas():
    L = keras.layers
    return (
        ((L.Conv1D, L.Conv2D, L.Conv3D), _conv),
        ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), _conv_transpose),
        ((L.DepthwiseConv1D, L.DepthwiseConv2D), _depthwise),
        ((L.SeparableConv1D, L.SeparableConv2D), _separable),
        ((L.Dense,), _dense),
        ((L.EinsumDense,), _einsum_dense),
        ((L.Dot,), _dot),
    )


_FORMULAS = None


def keras_macs(op, in_shapes, out_shapes):
    """`(macs, source)` for a known Keras layer or op, or None when the type is not known here.

    `in_shapes` / `out_shapes`: lists of shapes (one per tensor) including the leading dim.
    """
    global _FORMULAS
    if _FORMULAS is None:
        _FORMULAS = _layer_formulas()
    for classes, formula in _FORMULAS:
        if isinstance(op, classes):
            x = _dims(in_shapes[0], f"the input of {op.name!r}")
            return int(formula(op, x, out_shapes[0] if out_shapes else None)), SOURCE_KERAS
    cls = type(op)
    module = cls.__module__ + "."
    if isinstance(op, keras.layers.Layer):
        if module.startswith(_ZERO_MODULES):
            return 0, SOURCE_ZERO
        if module.startswith("keras.src.layers.merging.") and cls.__name__ in _ZERO_MERGES:
            return 0, SOURCE_ZERO
        return None
    # A bare `keras.ops` operation recorded as a node of a functional model.
    name = cls.__name__
    if name == "Matmul" and len(in_shapes) == 2 and len(in_shapes[0]) >= 1:
        y = _dims(out_shapes[0], f"the output of {op.name!r}")
        return math.prod(y) * int(in_shapes[0][-1]), SOURCE_KERAS
    if name == "Einsum" and getattr(op, "subscripts", None):
        shapes = [_dims(s) for s in in_shapes]
        return einsum_macs(op.subscripts, shapes), SOURCE_KERAS
    if name in _ZERO_OPS:
        return 0, SOURCE_ZERO
    return None
