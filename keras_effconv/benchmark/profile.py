"""Where the time of a training step or an inference call goes, per op category (`effconv profile`).

`profile_model` warms up a registered model (compiled `train_on_batch`, or a `tf.function` inference
call on the TF runtime, no XLA), captures a few steps with the TF profiler and reads the host
plane of the `.xplane.pb` directly (the XSpace proto ships with TensorFlow; no xprof needed).

Each TF op event ("scope/name:OpType") gets a category from its op type, whether it is in the
gradient tape, and the Keras layer its name scope resolves to (kernel shape -> 1x1 / kxk, dense /
grouped; BatchNorm; transposed conv). Ops on the 2 inter-op threads overlap, so each instant of a
step is split equally among the ops running then: the categories add up to the busy time, and
"framework overhead" = step wall time - busy time (Python, Keras dispatch, executor scheduling).
"""

import collections
import glob
import os
import re
import tempfile

MODES = ("train", "infer")
STEP_NAME = "effconv_profile_step"
OVERHEAD = "framework overhead"
CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}  # containers: their ops are traced themselves
_ADD_RELU = {"AddV2", "Add", "AddN", "BiasAdd", "Relu", "Relu6", "ReluGrad", "Relu6Grad", "BiasAddGrad"}
_MATMUL = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"}
_BN_SCOPE = re.compile(r"(batch_norm|(^|_)bn\d*$)")
_SUFFIX = re.compile(r"_\d+$")


def normalize_op_type(op_type):
    """'_MklNativeFusedConv2D' / '_MklNativePadWithFusedConv2D' -> 'Conv2D', '_FusedBatchNormEx' ->
    'FusedBatchNormV3' (oneDNN and grappler rewrites keep the kernel's meaning)."""
    name = re.sub(r"^_(MklNative|Mkl)?(PadWith)?", "", op_type)
    if name.startswith("Fused") and name[5:] in ("Conv2D", "DepthwiseConv2dNative", "MatMul", "Conv3D"):
        name = name[5:]
    return "FusedBatchNormV3" if name == "FusedBatchNormEx" else name


def _scope_has(name, pattern):
    return any(pattern.search(_SUFFIX.sub("", part)) for part in name.split("/")[:-1])


def op_category(op_type, name="", layer=None, optimizer=None):
    """Category of one TF op event.

    op_type: the TF op type (raw or normalized); name: its node name (name scopes);
    layer: `describe_layer(...)` of the Keras layer the name resolves to, or None;
    optimizer: the optimizer's name (its scope holds the variable updates).
    """
    kind = normalize_op_type(op_type)
    parts = name.split("/")
    backward = parts[0] == "gradient_tape" or "Grad" in kind  # not "Backprop": a conv transpose
    direction = "bwd" if backward else "fwd"
    first = _SUFFIX.sub("", parts[0]) if parts else ""
    if kind.startswith(("ResourceApply", "Apply")) or (optimizer and first == optimizer):
        return "optimizer"
    if first in ("compile_loss", "compile_metrics", "metrics"):
        return "loss & metrics"
    if kind in ("Transpose", "ConjugateTranspose"):
        return "transpose"
    if (layer or {}).get("transpose") or "conv2d_transpose" in name:
        return f"transposed conv {direction}"
    if kind.startswith("DepthwiseConv2dNative"):
        suffix = {"DepthwiseConv2dNativeBackpropInput": "bwd input",
                  "DepthwiseConv2dNativeBackpropFilter": "bwd filter"}.get(kind, "fwd")
        return f"depthwise {suffix}"
    if kind in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        suffix = {"Conv2DBackpropInput": "bwd input", "Conv2DBackpropFilter": "bwd filter"}.get(kind, "fwd")
        if "FusedConv2D" in op_type and not (layer or {}).get("conv"):
            # grappler folded a BatchNorm (and ReLU) into the conv and named the op after the BN
            return f"conv + folded BN {suffix}"
        return f"conv {(layer or {}).get('conv') or '(kernel unknown)'} {suffix}"
    if kind.startswith("FusedBatchNorm") or (layer or {}).get("batchnorm") or (layer is None and _scope_has(name, _BN_SCOPE)):
        return f"batchnorm {direction}"
    if kind in _ADD_RELU:
        return f"add/relu {direction}"
    if kind in _MATMUL:
        return "matmul/einsum"
    return "other"


def _own_kernels(layer):
    subs = {id(v) for sub in layer._flatten_layers(include_self=False, recursive=True) for v in sub.weights}
    return [tuple(v.shape) for v in layer.weights if id(v) not in subs and len(v.shape) == 4]


def describe_layer(layer):
    """What `op_category` needs to know about a layer: BatchNorm, transposed conv, conv kernel kind."""
    cls = type(layer).__name__
    info = {"class": cls, "batchnorm": "BatchNorm" in cls, "transpose": "Transpose" in cls, "conv": None}
    kernels = [k for k in _own_kernels(layer) if k[-1] > 1] or _own_kernels(layer)
    if len(kernels) == 1:
        kh, kw, rows, _ = kernels[0]
        shapes = getattr(layer, "_build_shapes_dict", None) or {}
        shape = next(iter(shapes.values()), None)
        if isinstance(shape, list):
            shape = shape[0]
        channels = shape[-1] if shape else None
        grouped = getattr(layer, "groups", 1) > 1 or (channels is not None and rows < channels)
        info["conv"] = f"{'1x1' if (kh, kw) == (1, 1) else 'kxk'} {'grouped' if grouped else 'dense'}"
    return info


class LayerResolver:
    """Maps op names ('gradient_tape/effresnet20_1/conv2_block1_1_dw_1/depthwise') to the innermost
    Keras layer of `model` their name scopes name (Keras suffixes scopes with '_N')."""

    def __init__(self, model):
        self.model = model
        self._cache = {}

    @staticmethod
    def _child(layer, part):
        children = {c.name: c for c in layer._flatten_layers(include_self=False, recursive=False)}
        return children.get(part) or children.get(_SUFFIX.sub("", part))

    def __call__(self, name):
        scopes = tuple(p for p in name.split("/")[:-1] if p != "gradient_tape")
        if scopes in self._cache:
            return self._cache[scopes]
        found = None
        if self.model is not None and scopes and self.model.name in (scopes[0], _SUFFIX.sub("", scopes[0])):
            layer = self.model
            for part in scopes[1:]:
                layer = self._child(layer, part)
                if layer is None:
                    break
                found = layer
        self._cache[scopes] = describe_layer(found) if found is not None else None
        return self._cache[scopes]


def _stat_value(stat):
    return stat.str_value or stat.int64_value or stat.uint64_value or stat.double_value


def read_events(xspace):
    """(steps, ops) from the host plane: steps = [(start_ps, end_ps)] of the STEP_NAME traces,
    ops = [(line, start_ps, end_ps, name, op_type)] of the TF op events."""
    steps, ops = [], []
    for plane in xspace.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            base = line.timestamp_ns * 1000
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                start = base + event.offset_ps
                end = start + event.duration_ps
                if meta.name == STEP_NAME:
                    steps.append((start, end))
                elif meta.display_name and meta.name.endswith(":" + meta.display_name):
                    if normalize_op_type(meta.display_name) not in CALL_OPS:
                        ops.append((line.id, start, end, meta.name[: -len(meta.display_name) - 1], meta.display_name))
    return sorted(steps), ops


def split_busy_time(intervals):
    """intervals: [(line, start, end)]. Returns the time each one is credited with: on a line only
    the innermost of nested events runs; across lines concurrent events share each instant equally."""
    points = []
    for i, (_, start, end) in enumerate(intervals):
        points.append((start, 1, -end, i))
        points.append((end, 0, -start, i))
    points.sort()
    credit = [0.0] * len(intervals)
    stacks = collections.defaultdict(list)
    previous = None
    for time, is_start, _, i in points:
        if previous is not None and time > previous:
            tops = [stack[-1] for stack in stacks.values() if stack]
            for j in tops:
                credit[j] += (time - previous) / len(tops)
        previous = time
        stack = stacks[intervals[i][0]]
        if is_start:
            stack.append(i)
        elif i in stack:
            stack.remove(i)
    return credit


def aggregate(xspace, model=None, optimizer=None, top=10):
    """Per-step category and op-type times (ms, % of step wall time) from a parsed XSpace."""
    steps, ops = read_events(xspace)
    if not steps:
        raise ValueError(f"the profile has no {STEP_NAME!r} step events; received {len(ops)} op events only")
    resolve = LayerResolver(model)
    categories = collections.defaultdict(lambda: [0.0, 0.0, 0])  # credited ps, summed ps, count
    types = collections.defaultdict(lambda: [0.0, 0])
    busy = 0.0
    edges = [0.0, 0.0]  # overhead before the first op and after the last op of each step
    for step_start, step_end in steps:
        clipped = [(line, max(s, step_start), min(e, step_end), name, kind)
                   for line, s, e, name, kind in ops if s < step_end and e > step_start]
        credit = split_busy_time([c[:3] for c in clipped])
        for (_, s, e, name, kind), share in zip(clipped, credit):
            entry = categories[op_category(kind, name, resolve(name), optimizer)]
            entry[0] += share
            entry[1] += e - s
            entry[2] += 1
            types[normalize_op_type(kind)][0] += share
            types[normalize_op_type(kind)][1] += 1
        busy += sum(credit)
        if clipped:
            edges[0] += min(c[1] for c in clipped) - step_start
            edges[1] += step_end - max(c[2] for c in clipped)
    n = len(steps)
    wall_ps = [end - start for start, end in steps]
    wall = sum(wall_ps) / n
    categories[OVERHEAD] = [max(sum(wall_ps) - busy, 0.0), 0.0, 0]

    def row(key, ps, extra):
        return {key: extra[0], "ms": ps / n / 1e9, "percent": 100.0 * ps / n / wall if wall else 0.0, **extra[1]}

    rows = sorted(
        (row("category", v[0], (k, {"op_ms": v[1] / n / 1e9, "ops": v[2] / n})) for k, v in categories.items()),
        key=lambda r: (r["category"] == OVERHEAD, -r["ms"]),
    )
    top_ops = sorted((row("op_type", v[0], (k, {"ops": v[1] / n})) for k, v in types.items()),
                     key=lambda r: -r["ms"])[:top]
    return {"steps": n, "step_ms": [w / 1e9 for w in wall_ps], "step_ms_mean": wall / 1e9,
            "busy_ms": busy / n / 1e9, "categories": rows, "top_ops": top_ops,
            "overhead_ms": {"before_first_op": edges[0] / n / 1e9, "after_last_op": edges[1] / n / 1e9,
                            "between_ops": max(sum(wall_ps) - busy - sum(edges), 0.0) / n / 1e9}}


def load_xspace(logdir):
    """The XSpace of the newest `.xplane.pb` under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not files:
        raise OSError(f"no .xplane.pb under logdir={logdir!r}: did the profiler run?")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    return space


def _check(mode, batch, image_size, steps, warmup):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received mode={mode!r}")
    for arg, value, low in (("batch", batch, 1), ("image_size", image_size, 1), ("steps", steps, 1), ("warmup", warmup, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{arg}` must be an integer >= {low}; received {arg}={value!r}")


def profile_model(name, mode="train", batch=16, image_size=224, steps=5, warmup=3, classes=10,
                  optimizer="sgd", logdir=None, seed=0):
    """Profile `steps` training steps (`mode="train"`, compiled `train_on_batch`) or inference calls
    (`mode="infer"`, `tf.function`, TF runtime) of the registered model `name` after `warmup`
    untimed ones. logdir: keep the trace there (TensorBoard's profile plugin can open it); default a
    temporary dir that is removed. Returns `aggregate`'s dict plus the run's settings."""
    _check(mode, batch, image_size, steps, warmup)
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_effconv.applications import get_model
    from keras_effconv.benchmark import timing

    model = get_model(name, weights=None, input_shape=(image_size, image_size, 3), classes=classes)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((batch, image_size, image_size, 3)).astype("float32"))
    optimizer_name = None
    if mode == "train":
        y = tf.constant(rng.integers(0, classes, batch))
        model.compile(optimizer=keras.optimizers.get(optimizer), loss="sparse_categorical_crossentropy",
                      jit_compile=False)
        optimizer_name = model.optimizer.name

        def step():
            return model.train_on_batch(x, y)  # returns numpy: the step has ended on the host
    else:
        infer = tf.function(lambda t: model(t, training=False), jit_compile=False)

        def step():
            return infer(x).numpy()

    for _ in range(warmup):
        step()
    with tempfile.TemporaryDirectory(prefix="effconv_profile_") as tmp:
        target = logdir or tmp
        tf.profiler.experimental.start(target)
        try:
            step()  # inside the capture but not counted: the profiler's own first-event costs
            for i in range(steps):
                with tf.profiler.experimental.Trace(STEP_NAME, step_num=i, _r=1):
                    step()
        finally:
            tf.profiler.experimental.stop()
        result = aggregate(load_xspace(target), model, optimizer_name)
    result.update(model=name, mode=mode, batch=batch, image_size=image_size, warmup=warmup,
                  params=int(model.count_params()), logdir=logdir, load_average=timing.load_average())
    return result


def _fmt(value, digits=2):
    return f"{value:.{digits}f}"


def format_profile(*results):
    """Markdown: categories (ms/step, % of step) of one or more profiles side by side, then each
    one's top op types."""
    if not results:
        raise ValueError("format_profile needs at least one result; received none")
    names = [f"{r['model']} {r['mode']} b{r['batch']}@{r['image_size']}" for r in results]
    order = []
    for r in results:
        order += [c["category"] for c in r["categories"] if c["category"] not in order and c["category"] != OVERHEAD]
    order.append(OVERHEAD)
    lines = ["| category | " + " | ".join(f"{n} ms | %" for n in names) + " |",
             "|---|" + "---|---|" * len(results)]
    for category in order:
        cells = []
        for r in results:
            row = next((c for c in r["categories"] if c["category"] == category), None)
            cells += [_fmt(row["ms"]), _fmt(row["percent"], 1)] if row else ["-", "-"]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    lines.append("| **step wall time** | " + " | ".join(f"**{_fmt(r['step_ms_mean'])}** | 100" for r in results) + " |")
    for name, r in zip(names, results):
        gaps = r["overhead_ms"]
        lines += ["", f"Framework overhead, {name}: {_fmt(gaps['before_first_op'])} ms before the first op "
                  f"(Python, Keras, function call), {_fmt(gaps['between_ops'])} ms between ops, "
                  f"{_fmt(gaps['after_last_op'])} ms after the last one (results to the host)."]
        lines += ["", f"Top op types, {name} (busy {_fmt(r['busy_ms'])} of {_fmt(r['step_ms_mean'])} ms/step, "
                  f"{r['steps']} steps):", "", "| op type | ms | % | ops/step |", "|---|---|---|---|"]
        lines += [f"| {o['op_type']} | {_fmt(o['ms'])} | {_fmt(o['percent'], 1)} | {o['ops']:.0f} |" for o in r["top_ops"]]
    return "\n".join(lines)
