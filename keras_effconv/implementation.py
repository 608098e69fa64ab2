"""The one place that picks an implementation for every layer of the package.

Each layer in `keras_effconv.layers` has a *reference* path (simple, obviously right, used by the
tests) and *fast* paths specialised per runtime:

- ``"tf"``: the TensorFlow graph/eager runtime. This is also what `TFLiteConverter.from_keras_model`
  traces, so every op on this path must be a TFLite builtin (no Flex, no custom ops).
- ``"xla"``: inside `jit_compile=True`. XLA on CPU runs `DepthwiseConv2dNative` ~50x slower than the
  TF runtime, so intra-channel convolutions are rewritten as fused shift-and-add loops there.
- ``"custom"``: the optional C++ op library (`keras_effconv.ops.custom`), used on the TF runtime only
  when it is loaded and enabled. Exports made through `keras_effconv.export` (TFLite, SavedModel)
  trace under `exporting()` and never use it; Keras' own `model.export` does not, so call
  `enable_custom_ops(False)` before it.

`resolve()` is what layers call. Users choose the policy with `set_implementation()` or the
`implementation()` context manager; a layer's own ``implementation=`` argument overrides it.

The choice is made when a layer is *called*: eagerly on every call, but inside a `tf.function`
(`model.fit`, `model.predict`, a jit-compiled step, an export) only while tracing. A function traced
before `set_implementation` keeps the path it traced with until it is retraced (e.g. a new model,
`model.make_predict_function(force=True)`). Each layer records the path its last call or trace took
in ``layer.resolved_implementation``; `resolved_implementations(layer)` collects it over a layer and
its sublayers, which is how the tests check which path ran.
"""

import contextlib

from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

POLICIES = ("auto", "reference", "fast")


class _State:
    # Process-wide, not thread-local: tf.distribute runs replica functions in their own threads.
    policy = "auto"
    exporting = False
    custom_ops = False


_state = _State()


def _policy():
    return _state.policy


def get_implementation():
    """The global policy: "auto" (fast path for the current runtime), "reference" or "fast"."""
    return _policy()


def set_implementation(policy):
    """Set the global policy ("auto", "reference" or "fast")."""
    _state.policy = validate_policy(policy, "policy")


@contextlib.contextmanager
def implementation(policy):
    """Context manager form of `set_implementation`; restores the previous policy on exit."""
    previous = _policy()
    set_implementation(policy)
    try:
        yield
    finally:
        _state.policy = previous


def validate_policy(policy, argument="implementation"):
    if policy not in POLICIES:
        raise ValueError(f"`{argument}` must be one of {POLICIES}; received {argument}={policy!r}")
    return policy


def in_xla_context():
    """True while tracing a function compiled by XLA (`jit_compile=True`)."""
    graph = tf_ops.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def enable_custom_ops(enabled=True):
    """Let the TF runtime path use the C++ op library (see `keras_effconv.ops.custom`).

    Enabling builds/loads the library and raises `CustomOpsError` saying why if it cannot. Off by
    default: on this machine kind the fused SIC step is ~1.3x faster than the composite path, below
    the 1.5x that would justify a non-portable default. Exports always use the composite path.
    """
    if enabled:
        from keras_effconv.ops import custom

        custom.load_custom_ops()
    _state.custom_ops = bool(enabled)


def custom_ops_enabled():
    return _state.custom_ops


def resolve(layer_policy="auto"):
    """Pick the path for one call: "reference", "xla", "custom" or "tf".

    `layer_policy` is the layer's own ``implementation`` argument; "auto" defers to the global policy.
    """
    policy = layer_policy if layer_policy != "auto" else _policy()
    if policy == "reference":
        return "reference"
    if in_xla_context():
        return "xla"
    if _state.custom_ops and not _state.exporting:
        return "custom"
    return "tf"


@contextlib.contextmanager
def exporting():
    """Marks a trace made for export (SavedModel/TFLite): the portable "tf" path is used, never "custom"."""
    previous = _state.exporting
    _state.exporting = True
    try:
        yield
    finally:
        _state.exporting = previous


def is_exporting():
    """True inside `exporting()`: layers keep their traced graph to the portable reference ops."""
    return _state.exporting


def resolved_implementations(layer):
    """{layer name: path} of `layer` and every sublayer that has been called (see module docstring)."""
    layers = [layer] + list(layer._flatten_layers(include_self=False, recursive=True))
    return {sub.name: sub.resolved_implementation for sub in layers
            if getattr(sub, "resolved_implementation", None) is not None}
