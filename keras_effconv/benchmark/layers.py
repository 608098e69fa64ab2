"""Layer benchmark: each keras_effconv layer's reference path vs fast path vs the dense Conv2D it
replaces, under the TF runtime, XLA (`jit_compile=True`) and LiteRT (builtins only).

Per (layer config, input shape) and runtime it reports ms (median of warm runs), the speedup of the
fast path over the dense conv, the MAC ratio (dense MACs / layer MACs, the ideal speedup) and
`speedup / MAC ratio` (the target wants >= 0.6), plus the fast-vs-reference output error.

Layers are built through `CASES`, a table of (name, class name, kwargs factory, dense twin).
`layer_report` prints the result. Run via tools/bench_layers.py.
"""

import contextlib
import dataclasses
import gc
import inspect
import time

import numpy as np

from keras_effconv.benchmark import report
from keras_effconv.benchmark import timing

SCHEMA = "keras_effconv.bench.layers/1"
SHAPES = ((56, 56, 256), (14, 14, 1024))
BATCH = 8
RUNTIMES = ("tf", "xla", "litert")
RUNTIME_LABELS = {"tf": "TF", "xla": "XLA", "litert": "LiteRT"}
VARIANTS = ("reference", "fast", "dense")
TARGET = 0.6


@dataclasses.dataclass(frozen=True)
class LayerCase:
    name: str
    class_name: str  # attribute of keras_effconv.layers
    kwargs: object  # channels -> dict of constructor kwargs (without `implementation`)
    dense_kernel: int  # the dense twin: keras Conv2D(channels, dense_kernel, padding="same")

    def dense_name(self):
        return f"Conv2D {self.dense_kernel}x{self.dense_kernel}"


def _topological(parts, neighbors):
    """1x1 TopologicalConv2D over a `parts x C/parts` channel layout, each output group connected
    to `neighbors` input groups: connection ratio neighbors / parts."""

    def kwargs(c):
        return dict(filters=c, kernel_size=1, layout=(parts, c // parts), neighborhood=(neighbors, c // parts))

    return kwargs


CASES = (
    LayerCase("IntraChannelConv2D 3x3", "IntraChannelConv2D", lambda c: dict(kernel_size=3, padding="same"), 3),
    LayerCase("TopologicalConv2D 1x1 block 1/2", "TopologicalConv2D", _topological(2, 1), 1),
    LayerCase("TopologicalConv2D 1x1 block 1/4", "TopologicalConv2D", _topological(4, 1), 1),
    LayerCase("TopologicalConv2D 1x1 band 1/4", "TopologicalConv2D", _topological(8, 2), 1),
    LayerCase("TopologicalConv2D 1x1 block 1/8", "TopologicalConv2D", _topological(8, 1), 1),
    LayerCase("TopologicalConv2D 1x1 band 1/8", "TopologicalConv2D", _topological(16, 2), 1),
    LayerCase("SIConv2D 3x3 depth=2", "SIConv2D", lambda c: dict(filters=c, kernel_size=3, depth=2), 3),
    LayerCase("SpatialBottleneck f=2 3x3", "SpatialBottleneck", lambda c: dict(filters=c, factor=2, kernel_size=3), 3),
    LayerCase("EffConv2D 3x3 (default)", "EffConv2D", lambda c: dict(filters=c, kernel_size=3), 3),
    # The field's other efficient convolutions, block for block against the same 3x3 (or 1x1) conv.
    LayerCase("DepthwiseSeparableBlock 3x3", "DepthwiseSeparableBlock", lambda c: dict(filters=c), 3),
    LayerCase("FactorizedConv2D CP r=C/4 mobilenet", "FactorizedConv2D",
              lambda c: dict(filters=c, kernel_size=3, rank=c // 4, factorization="cp", execution="mobilenet"), 3),
    LayerCase("FactorizedConv2D Tucker C/4", "FactorizedConv2D",
              lambda c: dict(filters=c, kernel_size=3, rank=(c // 4, c // 4), factorization="tucker",
                             execution="factorized"), 3),
    LayerCase("DecoupledConv2D M=2C", "DecoupledConv2D", lambda c: dict(filters=c, kernel_size=3, intermediate_channels=2 * c), 3),
    LayerCase("StructuredConv2D (C/2, 2)", "StructuredConv2D", lambda c: dict(filters=c, kernel_size=3, structure=(c // 2, 2)), 3),
    LayerCase("DepthwiseSeparableChannelWiseConv", "DepthwiseSeparableChannelWiseConv", lambda c: dict(kernel_size=3), 3),
    LayerCase("GroupChannelWiseConv g=2", "GroupChannelWiseConv", lambda c: dict(groups=2), 1),
)


@dataclasses.dataclass
class LayerBenchConfig:
    shapes: tuple = SHAPES
    batch: int = BATCH
    runtimes: tuple = RUNTIMES
    runs: int = 10
    reference_runs: int = 5  # the reference paths are slow baselines (seconds per call): fewer runs
    warmup: int = 2
    threads: int = None
    cases: tuple = None  # substrings of case names to keep; None = all
    target: float = TARGET
    quick: bool = False
    seed: int = 0

    def validate(self):
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"`runtimes` must be a subset of {RUNTIMES}; received runtimes={self.runtimes!r}")
        for name in ("batch", "runs", "reference_runs", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
        for shape in self.shapes:
            if len(shape) != 3 or any(int(d) < 1 for d in shape):
                raise ValueError(f"`shapes` must be (H, W, C) triples; received shapes={self.shapes!r}")
        return self


def selected_cases(config, cases=CASES):
    if not config.cases:
        return list(cases)
    keep = [s.lower() for s in config.cases]
    return [c for c in cases if any(k in c.name.lower() for k in keep)]


def make_layer(case, channels, implementation, layers_module=None):
    """Instantiate `case` for `channels` input channels, with `implementation` if the layer takes one."""
    if layers_module is None:
        import keras_effconv.layers as layers_module
    cls = getattr(layers_module, case.class_name)
    kwargs = case.kwargs(channels)
    if "implementation" not in kwargs and "implementation" in inspect.signature(cls.__init__).parameters:
        kwargs["implementation"] = implementation
    # Otherwise the layer has no reference/fast switch: the global policy, set around tracing, chooses
    # the path of the package layers it contains.
    return cls(**kwargs)


def _kwargs_text(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def make_dense(case, channels):
    import keras

    return keras.layers.Conv2D(channels, case.dense_kernel, padding="same", use_bias=False)


def conv2d_macs(layer, input_shape):
    """MACs of a keras Conv2D for one example."""
    out = layer.compute_output_shape((None, *input_shape))
    kh, kw = layer.kernel_size
    groups = getattr(layer, "groups", 1) or 1
    return int(np.prod(out[1:-1])) * int(out[-1]) * kh * kw * int(input_shape[-1]) // groups


def layer_macs(layer, input_shape):
    """MACs for one example: the layer's `compute_macs`, else `keras_effconv.analysis.count_macs`."""
    if hasattr(layer, "compute_macs"):
        return int(layer.compute_macs((None, *input_shape)))
    import keras

    from keras_effconv.analysis import count_macs

    inputs = keras.Input(input_shape)
    return int(count_macs(keras.Model(inputs, layer(inputs))))


def _policy(variant):
    if variant == "dense":
        return contextlib.nullcontext()
    from keras_effconv.implementation import implementation

    return implementation("reference" if variant == "reference" else "auto")


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def bench_layer(layer, variant, x, config, log, tag):
    """{runtime: timing dict or {"error"}} plus the outputs of each runtime (for the error check)."""
    import keras
    import tensorflow as tf

    cells, outputs = {}, {}
    xt = tf.constant(x)
    for runtime in config.runtimes:
        label = f"{tag} {variant:<9} {RUNTIME_LABELS[runtime]:<6}"
        try:
            with _policy(variant):
                if runtime in ("tf", "xla"):
                    fn = tf.function(lambda v: layer(v, training=False), jit_compile=runtime == "xla")

                    def call():
                        return timing.sync(fn(xt))

                else:
                    from keras_effconv.export import LiteRTRunner
                    from keras_effconv.export import to_tflite

                    inputs = keras.Input(x.shape[1:], batch_size=None)
                    model = keras.Model(inputs, layer(inputs, training=False))
                    start = time.perf_counter()
                    with timing.captured_output():
                        flatbuffer = to_tflite(model)
                        runner = LiteRTRunner(flatbuffer, num_threads=config.threads)
                        runner(x)  # allocate + create the XNNPACK delegate quietly
                    convert_s = time.perf_counter() - start

                    def call():
                        return runner(x)

                runs = config.reference_runs if variant == "reference" else config.runs
                result = timing.measure(call, runs=runs, warmup=config.warmup)
                outputs[runtime] = call()
        except Exception as error:  # noqa: BLE001 - a failing cell must not stop the run
            cells[runtime] = {"error": timing.error_summary(error)}
            log(f"  {label} ERROR {timing.error_summary(error, 200)}")
            continue
        cell = result.to_dict()
        if runtime == "litert":
            cell["convert_s"] = convert_s
        cells[runtime] = cell
        log(f"  {label} median {report.fmt_ms(result.median_ms):>8} ms  p90 {report.fmt_ms(result.p90_ms):>8} ms")
    return cells, outputs


def run_layer_benchmark(config, cases=CASES, layers_module=None, log=print):
    """Run every selected case on every shape; returns a JSON-ready dict."""
    import keras

    config.validate()
    threads_info = timing.configure_threads(config.threads)
    if config.threads is None:
        config = dataclasses.replace(config, threads=threads_info["requested"])
    warning = timing.busy_warning()
    if warning:
        log(warning)
    result = {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": timing.machine_info(threads=threads_info),
        "config": {k: v for k, v in dataclasses.asdict(config).items()},
        "notes": {
            "latency": "ms per call of one layer on a (batch, H, W, C) input; median/p90 of warm runs",
            "paths": "reference: implementation='reference'; fast: implementation='auto' (the path the "
            "runtime resolves to: 'tf' on the TF runtime and LiteRT export, 'xla' under jit_compile); "
            "dense: keras.layers.Conv2D(C, k, padding='same', use_bias=False)",
            "ratios": "speedup = dense ms / fast ms; mac_ratio = dense MACs / layer MACs; "
            f"efficiency = speedup / mac_ratio (target >= {config.target})",
            "error": "max |fast - reference| / max |reference| on the same weights, per runtime",
        },
        "errors": [],
        "results": [],
    }
    rng = np.random.default_rng(config.seed)
    dense_cache = {}
    start = time.perf_counter()
    for case in selected_cases(config, cases):
        for shape in config.shapes:
            shape = tuple(int(d) for d in shape)
            tag = f"{case.name} @ {'x'.join(map(str, shape))}"
            log(f"{tag}")
            x = rng.standard_normal((config.batch, *shape)).astype("float32")
            ref = make_layer(case, shape[-1], "reference", layers_module)
            fast = make_layer(case, shape[-1], "auto", layers_module)
            try:
                with _policy("reference"):
                    ref(x[:1], training=False)  # build
                fast(x[:1], training=False)
            except Exception as error:  # noqa: BLE001 - e.g. a shape the layer rejects: report, go on
                message = f"build failed: {timing.error_summary(error)}"
                result["errors"].append({"case": case.name, "shape": shape, "message": message})
                log(f"  ERROR: {message}")
                continue
            weights_shared = True
            try:
                fast.set_weights(ref.get_weights())
            except Exception:  # noqa: BLE001 - different variable layouts: no error check
                weights_shared = False
            macs = layer_macs(fast, shape)
            entry = {
                "case": case.name,
                "class_name": case.class_name,
                "kwargs": case.kwargs(shape[-1]),
                "dense": case.dense_name(),
                "shape": shape,
                "batch": config.batch,
                "macs": macs,
                "params": int(fast.count_params()),
                "timings": {},
                "fast_vs_reference_error": {},
            }
            ref_cells, ref_out = bench_layer(ref, "reference", x, config, log, "  ")
            fast_cells, fast_out = bench_layer(fast, "fast", x, config, log, "  ")
            entry["timings"]["reference"] = ref_cells
            entry["timings"]["fast"] = fast_cells
            if weights_shared and "tf" in ref_out:
                for runtime, y in fast_out.items():
                    entry["fast_vs_reference_error"][runtime] = _rel_err(y, ref_out["tf"])
            key = (case.dense_kernel, shape)
            if key not in dense_cache:
                dense = make_dense(case, shape[-1])
                dense(x[:1])
                dense_cells, _ = bench_layer(dense, "dense", x, config, log, "  ")
                dense_cache[key] = {
                    "timings": dense_cells,
                    "macs": conv2d_macs(dense, shape),
                    "params": int(dense.count_params()),
                }
            else:
                log(f"  (dense {case.dense_name()} @ {shape}: measured above, reused)")
            dense_info = dense_cache[key]
            entry["timings"]["dense"] = dense_info["timings"]
            entry["dense_macs"] = dense_info["macs"]
            entry["dense_params"] = dense_info["params"]
            entry["ratios"] = _ratios(entry, config.runtimes)
            result["results"].append(entry)
            del ref, fast
            keras.backend.clear_session()
            gc.collect()
    result["elapsed_s"] = time.perf_counter() - start
    result["machine"]["load_average_at_end"] = timing.load_average()
    return result


def _median(entry, variant, runtime):
    cell = entry["timings"].get(variant, {}).get(runtime)
    return cell.get("median_ms") if isinstance(cell, dict) else None


def _ratios(entry, runtimes):
    mac_ratio = report.ratio(entry.get("dense_macs"), entry.get("macs"))
    out = {"mac_ratio": mac_ratio, "per_runtime": {}}
    for runtime in runtimes:
        speedup = report.ratio(_median(entry, "dense", runtime), _median(entry, "fast", runtime))
        out["per_runtime"][runtime] = {
            "speedup_vs_dense": speedup,
            "fast_over_reference_speedup": report.ratio(
                _median(entry, "reference", runtime), _median(entry, "fast", runtime)
            ),
            "efficiency": report.ratio(speedup, mac_ratio),
        }
    return out
