"""`count_macs` and `profile`: multiply-accumulates and parameters of a Keras model, per layer.

MACs are for ONE example (batch 1). A layer's count comes from, in order:
1. its own `compute_macs(self, input_shape) -> int` (the package protocol; the batch dim of
   `input_shape` is passed as None and ignored); its sublayers are then NOT visited;
2. a formula for Keras built-ins (conv 1/2/3-D incl. groups/strides/dilation/padding through the
   output shape, depthwise, separable, transposed conv, Dense, EinsumDense, Dot), see `formulas.py`;
3. its sublayers: nested Models/Sequential/Functional are walked through their recorded graph nodes
   (built models need no input), other containers by tracing their `call` at batch 1;
4. otherwise 0: known zero-MAC types (pooling, BN, activations, element-wise merges, reshapes,
   dropout) silently, anything else flagged `unknown` in the profile.
Biases are not counted.
"""

import inspect
import math
import threading

import keras
import tensorflow as tf
from keras.src.ops.operation import Operation

from keras_effconv.analysis.formulas import attention_macs
from keras_effconv.analysis.formulas import keras_macs
from keras_effconv.analysis.profile import SOURCE_KERAS
from keras_effconv.analysis.profile import SOURCE_PROTOCOL
from keras_effconv.analysis.profile import SOURCE_UNKNOWN
from keras_effconv.analysis.profile import Profile
from keras_effconv.analysis.profile import Row


def count_macs(model_or_layer, input_shape=None):
    """Multiply-accumulates for one example of `model_or_layer` (batch 1), as an int.

    Args:
      model_or_layer: a Keras model or layer (built or not).
      input_shape: shape of one example WITHOUT the batch dim, e.g. `(224, 224, 3)`; a list of such
        shapes for several inputs. Required when the object is not built with fully known input
        shapes (e.g. an unbuilt layer, or a model built with `(None, None, 3)` inputs). Unbuilt
        layers get built by the count (their weights are created).
    """
    return profile(model_or_layer, input_shape).total_macs


def profile(model, input_shape=None):
    """Per-layer MACs (one example) and parameters as a `Profile`; see `count_macs` for arguments."""
    if input_shape is None:
        shapes = _known_input_shapes(model)
        if shapes is None:
            raise ValueError(
                f"`input_shape` is required: {model.name!r} ({type(model).__name__}) has no known "
                "input shape. Pass the shape of one example without the batch dim, e.g. "
                "input_shape=(224, 224, 3)."
            )
        fn = _functional_of(model)
        if fn is not None and _fully_defined(shapes):
            root = _Call(model, shapes, [tuple(t.shape) for t in fn.outputs])
        elif _fully_defined(shapes):
            root = _trace(model, [(1,) + tuple(s)[1:] for s in shapes])
        else:
            raise ValueError(
                f"`input_shape` is required: {model.name!r} has input shape(s) "
                f"{[tuple(s) for s in shapes]} with unknown dims. Pass the shape of one example "
                "without the batch dim, e.g. input_shape=(224, 224, 3)."
            )
    else:
        root = _trace(model, _batched(input_shape))
    rows = []
    _evaluate(root, None, rows, set())
    return Profile(model.name, rows)


class _Call:
    """One call of an operation with its input/output shapes; `children` = recorded sub-calls."""

    __slots__ = ("op", "in_shapes", "out_shapes", "children", "arguments")

    def __init__(self, op, in_shapes, out_shapes=None, children=None, arguments=None):
        self.op = op
        self.in_shapes = in_shapes
        self.out_shapes = out_shapes
        self.children = children
        self.arguments = arguments  # graph-node call arguments, to re-trace with the same structure


# ---- walking ---------------------------------------------------------------------------------


def _evaluate(call, path, rows, seen_vars):
    """Append rows for `call` (a leaf row, or the rows of its sub-calls)."""
    op = call.op
    name = op.name if path is None else path

    def add_row(macs, source, variables, row_name=name):
        params = 0
        for v in variables:
            if id(v) not in seen_vars:
                seen_vars.add(id(v))
                params += math.prod(int(d) for d in v.shape)
        out = call.out_shapes or []
        out = tuple(out[0]) if len(out) == 1 else [tuple(s) for s in out]
        rows.append(Row(row_name, type(op).__name__, out, int(macs), params, source))

    weights = list(getattr(op, "weights", []))
    compute = getattr(op, "compute_macs", None)
    if callable(compute):
        batch = _batch_of(call.in_shapes)
        shapes = [(None,) + tuple(s[1:]) for s in call.in_shapes]
        macs = compute(shapes[0] if len(shapes) == 1 else shapes)
        add_row(batch * int(macs), SOURCE_PROTOCOL, weights)
        return
    known = keras_macs(op, call.in_shapes, call.out_shapes or [])
    if known is not None:
        add_row(known[0], known[1], weights)
        return
    if not _sublayers(op):
        add_row(0, SOURCE_UNKNOWN, weights)
        return
    if isinstance(op, keras.layers.TimeDistributed):
        # It runs `layer.call` per time step (no recorded sub-call): count the layer once on a
        # (batch * time) batch.
        merge = lambda s: (_batch_of([s]) * int(s[1]),) + tuple(s[2:])  # noqa: E731
        children = [_Call(op.layer, [merge(call.in_shapes[0])], [merge(call.out_shapes[0])])]
    else:
        children = call.children if call.children is not None else _expand(call)
    covered = set()
    prefix = "" if path is None else path + "/"
    for child in children:
        _evaluate(child, prefix + child.op.name, rows, seen_vars)
        covered.update(id(v) for v in getattr(child.op, "weights", []))
    if isinstance(op, keras.layers.MultiHeadAttention):
        add_row(attention_macs(op, call.in_shapes), SOURCE_KERAS, [], f"{name}/(attention)")
    own = [v for v in weights if id(v) not in covered and id(v) not in seen_vars]
    if own:
        # Weights used by the container itself (or by sublayers it never called): MACs unknown.
        add_row(0, SOURCE_UNKNOWN, own, f"{name}/(own weights)")


def _expand(call):
    """Sub-calls of a container: graph nodes of a functional model, else a traced call."""
    fn = _functional_of(call.op)
    if fn is not None:
        recorded = [tuple(t.shape)[1:] for t in fn.inputs]
        if recorded == [tuple(s)[1:] for s in call.in_shapes] and _fully_defined(
            [tuple(t.shape) for t in fn.inputs]
        ):
            calls = _graph_calls(fn)
            if all(_fully_defined(c.in_shapes + c.out_shapes) for c in calls):
                return calls
            # Some recorded shape is looser than the real one (e.g. a layer's output_shape with
            # None): trace instead, at the concrete shapes.
    return _trace(call.op, call.in_shapes, call.arguments).children


def _graph_calls(fn):
    """Calls of a Functional graph in execution order, with the shapes recorded at construction."""
    calls = []
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            calls.append(
                _Call(
                    node.operation,
                    [tuple(t.shape) for t in node.input_tensors],
                    [tuple(t.shape) for t in node.outputs],
                    arguments=node.arguments,
                )
            )
    return calls


def _functional_of(op):
    """The Functional graph behind `op` (a Functional model, or a built Sequential), else None."""
    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None)
    if hasattr(op, "_nodes_by_depth") and hasattr(op, "inputs"):
        try:
            op.inputs  # noqa: B018 - raises for a subclassed model that was never called
        except (AttributeError, ValueError):
            return None
        return op
    return None


def _sublayers(op):
    if not isinstance(op, keras.layers.Layer):
        return []
    return [
        layer
        for layer in op._flatten_layers(include_self=False, recursive=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


# ---- shapes ----------------------------------------------------------------------------------


def _is_shape(s):
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)


def _batched(input_shape):
    """`input_shape` (no batch dim; one shape or a list) -> list of shapes with batch 1."""
    if isinstance(input_shape, tf.TensorShape):
        input_shape = tuple(input_shape)
    if _is_shape(input_shape):
        shapes = [input_shape]
    elif isinstance(input_shape, (tuple, list)) and all(
        _is_shape(s) or isinstance(s, tf.TensorShape) for s in input_shape
    ):
        shapes = list(input_shape)
    else:
        raise ValueError(
            "`input_shape` must be the shape of one example without the batch dim, e.g. "
            f"(224, 224, 3), or a list of such shapes; received input_shape={input_shape!r}"
        )
    out = [(1,) + tuple(s) for s in shapes]
    if not _fully_defined(out):
        raise ValueError(f"`input_shape` must be fully defined; received input_shape={input_shape!r}")
    return out


def _fully_defined(shapes):
    return all(d is not None for s in shapes for d in tuple(s)[1:])


def _batch_of(shapes):
    first = tuple(shapes[0]) if shapes else ()
    return 1 if not first or first[0] is None else int(first[0])


def _known_input_shapes(layer):
    """Input shapes (with batch dim) known from the model graph, call nodes or build, else None."""
    fn = _functional_of(layer)
    if fn is not None:
        return [tuple(t.shape) for t in fn.inputs]
    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes:
        return [tuple(t.shape) for t in nodes[0].input_tensors]
    built = getattr(layer, "_build_shapes_dict", None)
    if getattr(layer, "built", False) and built and len(built) == 1:
        shape = next(iter(built.values()))
        if _is_shape(shape):
            return [tuple(shape)]
    return None


# ---- tracing ---------------------------------------------------------------------------------

_local = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_original_call = Operation.__call__


def _recording_call(self, *args, **kwargs):
    """`Operation.__call__` that records nested calls while this thread is tracing."""
    stack = getattr(_local, "stack", None)
    if stack is None or stack[-1].op is self:  # not tracing, or Layer.__call__ -> Operation.__call__
        return _original_call(self, *args, **kwargs)
    tensors = [t for t in keras.tree.flatten((args, kwargs)) if hasattr(t, "shape") and hasattr(t, "dtype")]
    call = _Call(self, [tuple(t.shape) for t in tensors], None, [])
    stack[-1].children.append(call)
    stack.append(call)
    try:
        outputs = _original_call(self, *args, **kwargs)
    finally:
        stack.pop()
    call.out_shapes = [tuple(t.shape) for t in keras.tree.flatten(outputs) if hasattr(t, "shape")]
    return outputs


def _trace(op, shapes, arguments=None):
    """Trace `op` on symbolic TF tensors of `shapes` (no compute) and return its recorded `_Call`.

    `arguments`: the graph node's call arguments, to call `op` with the same structure (several
    positional tensors, keyword tensors). Without it, several inputs go as a list to models and
    merge-style layers, and as positional arguments to layers whose `call` takes several.
    """
    batch = _batch_of(shapes)
    fn = _functional_of(op)
    if arguments is not None:
        tensors = arguments.keras_tensors
        shapes, dtypes = [tuple(t.shape) for t in tensors], [t.dtype for t in tensors]
    elif fn is not None and len(fn.inputs) == len(shapes):
        dtypes = [t.dtype for t in fn.inputs]
    else:
        dtypes = [getattr(op, "input_dtype", None) or "float32"] * len(shapes)
    specs = [tf.TensorSpec((batch,) + tuple(s[1:]), dtype) for s, dtype in zip(shapes, dtypes)]

    def run(*xs):
        if arguments is not None:
            args, kwargs = arguments.fill_in({id(t): x for t, x in zip(arguments.keras_tensors, xs)})
            return op(*args, **kwargs)
        if len(xs) > 1 and fn is None and _positional_params(op) > 1:
            return op(*xs)
        return op(xs[0] if len(xs) == 1 else list(xs))

    if not all(layer.built for layer in _all_layers(op)):
        tf.function(run, autograph=False).get_concrete_function(*specs)  # build first, unrecorded
    root = _Call(None, [], None, [])
    global _patch_users
    with _patch_lock:
        _patch_users += 1
        Operation.__call__ = _recording_call
    _local.stack = [root]
    try:
        tf.function(run, autograph=False).get_concrete_function(*specs)
    finally:
        _local.stack = None
        with _patch_lock:
            _patch_users -= 1
            if not _patch_users:
                Operation.__call__ = _original_call
    calls = [c for c in root.children if c.op is op]
    if not calls:
        raise ValueError(f"Tracing {op.name!r} recorded no call of it.")
    return calls[-1]  # the last trace is the clean one if TF retraced


def _positional_params(op):
    """How many positional parameters `op.call` takes (several inputs as separate arguments?)."""
    try:
        params = inspect.signature(op.call).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def _all_layers(op):
    if not isinstance(op, keras.layers.Layer):
        return []
    return list(op._flatten_layers(include_self=True, recursive=True))
