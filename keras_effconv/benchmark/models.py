"""Model benchmark: each Eff model against its keras.applications twin, plus reference models.

One run measures, per model: MACs (`keras_effconv.analysis.count_macs`) and params; inference latency
at each batch size under (a) the TF runtime (`tf.function`, `jit_compile=False`), (b) XLA
(`jit_compile=True`), (c) LiteRT (`to_tflite` builtins only + `LiteRTRunner`, XNNPACK); and (d) one
training step (`train_on_batch`, SGD with momentum, sparse categorical cross-entropy) at a stated
image size. Ratios are twin / Eff ("x times faster / fewer"), so > 1 means the Eff model wins.

Entry point: `run_model_benchmark(config)` -> JSON-ready dict; `model_report` prints and plots it.
The `effconv bench` command (`keras_effconv.cli.bench`) wires them up.
"""

import dataclasses
import gc
import time

import numpy as np

from keras_effconv.benchmark import report
from keras_effconv.benchmark import timing

SCHEMA = "keras_effconv.bench.models/1"

# Eff model -> the keras.applications model it is compared with.
PAIRS = {
    "EffResNet50": "ResNet50",
    "EffResNet101": "ResNet101",
    "EffVGG16": "VGG16",
}
REFERENCES = ("MobileNetV2", "EfficientNetB0")
DEFAULT_MODELS = ("EffResNet50", "ResNet50", "EffResNet101", "ResNet101", "EffVGG16", "VGG16") + REFERENCES

RUNTIMES = ("tf", "xla", "litert", "train")
RUNTIME_LABELS = {"tf": "TF", "xla": "XLA", "litert": "LiteRT", "train": "Train"}


@dataclasses.dataclass
class ModelBenchConfig:
    models: tuple = DEFAULT_MODELS
    add_twins: bool = True  # also run the twin of every requested Eff model
    image_size: int = 224
    batches: tuple = (1, 16)  # inference batch sizes for tf / xla
    litert_batches: tuple = (1, 16)
    runtimes: tuple = RUNTIMES
    train_image_size: int = 128
    train_batch: int = 32
    train_jit: bool = False  # compile the training step with XLA instead of the TF runtime
    train_references: bool = True  # also time the training step of the reference models
    runs: int = 10
    warmup: int = 2
    train_runs: int = 10
    threads: int = None  # TF intra/inter-op threads and LiteRT threads; None = all cores
    quick: bool = False
    seed: int = 0

    @classmethod
    def quick_run(cls, **overrides):
        """< 3 minutes on a 2-core machine: b1 only, 3 runs, a small training step."""
        values = dict(
            batches=(1,),
            litert_batches=(1,),
            train_image_size=64,
            train_batch=16,
            runs=3,
            warmup=1,
            train_runs=3,
            train_references=False,  # their train-graph tracing dominates a quick run
            quick=True,
        )
        values.update(overrides)
        return cls(**values)

    def validate(self):
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"`runtimes` must be a subset of {RUNTIMES}; received runtimes={self.runtimes!r}")
        for name in ("image_size", "train_image_size", "train_batch", "runs", "train_runs", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
        for name in ("batches", "litert_batches"):
            value = getattr(self, name)
            if any((not isinstance(b, int)) or b < 1 for b in value):
                raise ValueError(f"`{name}` must be positive ints; received {name}={value!r}")
        return self

    def train_label(self):
        mode = "XLA" if self.train_jit else "TF"
        return f"train_b{self.train_batch}", f"Train b{self.train_batch}@{self.train_image_size} ({mode})"


def twin_of(name, available=()):
    """The keras.applications twin of an Eff model: the PAIRS table, else "EffX" -> "X" if available."""
    if name in PAIRS:
        return PAIRS[name]
    if name.startswith("Eff") and name[3:] in available:
        return name[3:]
    return None


def columns(config):
    """[(key, label)] of the timed columns, in table order (grouped by batch size, then training)."""
    cols = []
    batches = sorted(set(config.batches) | (set(config.litert_batches) if "litert" in config.runtimes else set()))
    for batch in batches:
        for runtime in ("tf", "xla", "litert"):
            if runtime not in config.runtimes:
                continue
            allowed = config.litert_batches if runtime == "litert" else config.batches
            if batch in allowed:
                cols.append((f"{runtime}_b{batch}", f"{RUNTIME_LABELS[runtime]} b{batch}"))
    if "train" in config.runtimes:
        cols.append(config.train_label())
    return cols


def _default_registry():
    from keras_effconv.applications import available_models
    from keras_effconv.applications import get_model

    return get_model, available_models()


def plan(config, available):
    """[(name, role, twin)] to run; pairs stay adjacent (twin after). ValueError for unknown names."""
    unknown = [name for name in config.models if name not in available]
    if unknown:
        raise ValueError(f"`models` must be registered model names; received unknown {unknown!r} "
                         f"(available: {', '.join(sorted(available))})")
    to_run, seen = [], set()
    for name in config.models:
        twin = twin_of(name, available)
        names = [name] + ([twin] if twin and config.add_twins else [])
        for n in names:
            if n in seen:
                continue
            seen.add(n)
            if n not in available:  # a twin the caller's registry lacks
                continue
            t = twin_of(n, available)
            role = "eff" if t else ("twin" if n in PAIRS.values() else "reference")
            to_run.append((n, role, t))
    return to_run


def _input(rng, batch, size):
    return rng.standard_normal((batch, size, size, 3)).astype("float32")


def _timed(entry, key, label, fn, runs, warmup, log, name):
    try:
        result = timing.measure(fn, runs=runs, warmup=warmup)
    except Exception as error:  # noqa: BLE001 - one failing column must not stop the run
        entry["timings"][key] = {"error": timing.error_summary(error)}
        log(f"  {name:<16} {label:<22} ERROR {timing.error_summary(error, 160)}")
        return None
    entry["timings"][key] = result.to_dict()
    log(
        f"  {name:<16} {label:<22} median {report.fmt_ms(result.median_ms):>8} ms  "
        f"p90 {report.fmt_ms(result.p90_ms):>8} ms  "
        f"(first call {result.first_call_s:.2f} s)"
    )
    return result


def bench_model(name, role, twin, config, build, log=print):
    """Measure one model; never raises (errors are recorded in the entry)."""
    import keras
    import tensorflow as tf

    from keras_effconv.analysis import count_macs

    entry = {
        "model": name,
        "role": role,
        "twin": twin,
        "status": "ok",
        "image_size": config.image_size,
        "macs": None,
        "params": None,
        "timings": {},
        "setup_s": {},
        "litert_builtins_only": None,
        "load_average": {"before": timing.load_average()},
    }
    rng = np.random.default_rng(config.seed)
    size = config.image_size
    model_start = start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        model = build(name, weights=None, input_shape=(size, size, 3))
    except Exception as error:  # noqa: BLE001
        entry["status"] = "error"
        entry["error"] = f"build failed: {timing.error_summary(error)}"
        log(f"  {name:<16} build failed: {timing.error_summary(error, 200)}")
        return entry
    entry["setup_s"]["build"] = time.perf_counter() - start
    entry["params"] = int(model.count_params())
    entry["macs"] = int(count_macs(model))
    log(f"  {name:<16} built: {entry['params'] / 1e6:.2f} M params, {entry['macs'] / 1e9:.2f} GMACs")

    for runtime, jit in (("tf", False), ("xla", True)):
        if runtime not in config.runtimes:
            continue
        fn = tf.function(lambda x, m=model: m(x, training=False), jit_compile=jit, reduce_retracing=False)
        for batch in config.batches:
            x = tf.constant(_input(rng, batch, size))
            key, label = f"{runtime}_b{batch}", f"{RUNTIME_LABELS[runtime]} b{batch}"
            result = _timed(entry, key, label, lambda: timing.sync(fn(x)), config.runs, config.warmup, log, name)
            if result is not None:
                entry["setup_s"][f"{key}_first_call"] = result.first_call_s
        fn = None  # free the traced graphs before the next runtime

    if "litert" in config.runtimes and config.litert_batches:
        from keras_effconv.export import LiteRTRunner
        from keras_effconv.export import assert_builtins_only
        from keras_effconv.export import to_tflite

        flatbuffer = None
        try:
            start = time.perf_counter()
            with timing.captured_output():
                flatbuffer = to_tflite(model)
            entry["setup_s"]["tflite_convert"] = time.perf_counter() - start
            entry["tflite_bytes"] = len(flatbuffer)
        except Exception as error:  # noqa: BLE001
            message = f"to_tflite failed: {timing.error_summary(error)}"
            for batch in config.litert_batches:
                entry["timings"][f"litert_b{batch}"] = {"error": message}
            log(f"  {name:<16} {message[:200]}")
        if flatbuffer is not None:
            try:
                with timing.captured_output():
                    assert_builtins_only(flatbuffer)
                entry["litert_builtins_only"] = True
            except AssertionError as error:
                entry["litert_builtins_only"] = False
                entry["litert_ops_error"] = str(error)
                log(f"  {name:<16} WARNING: {error}")
            except Exception:  # noqa: BLE001 - the check itself is best effort
                pass
            try:
                with timing.captured_output():
                    runner = LiteRTRunner(flatbuffer, num_threads=config.threads)
                    runner(_input(rng, config.litert_batches[0], size))  # create the XNNPACK delegate quietly
            except Exception as error:  # noqa: BLE001
                runner = None
                for batch in config.litert_batches:
                    entry["timings"][f"litert_b{batch}"] = {"error": timing.error_summary(error)}
            if runner is not None:
                for batch in config.litert_batches:
                    x = _input(rng, batch, size)
                    key, label = f"litert_b{batch}", f"LiteRT b{batch}"
                    _timed(entry, key, label, lambda: runner(x), config.runs, config.warmup, log, name)
                del runner
        del flatbuffer
        gc.collect()

    del model
    keras.backend.clear_session()
    gc.collect()

    if "train" in config.runtimes and (role != "reference" or config.train_references):
        key, label = config.train_label()
        tsize = config.train_image_size
        try:
            train_model = build(name, weights=None, input_shape=(tsize, tsize, 3))
            classes = int(train_model.outputs[0].shape[-1])
            train_model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy",
                jit_compile=bool(config.train_jit),
            )
            x = _input(rng, config.train_batch, tsize)
            y = rng.integers(0, classes, size=(config.train_batch,)).astype("int32")
        except Exception as error:  # noqa: BLE001
            entry["timings"][key] = {"error": f"train setup failed: {timing.error_summary(error)}"}
            log(f"  {name:<16} {label}: setup failed: {timing.error_summary(error, 200)}")
        else:
            # The 1st call builds the optimizer and traces; one more untimed call unless --quick.
            warmup = config.warmup if config.quick else max(2, config.warmup)
            result = _timed(
                entry, key, label, lambda: train_model.train_on_batch(x, y), config.train_runs, warmup, log, name
            )
            if result is not None:
                entry["setup_s"][f"{key}_first_call"] = result.first_call_s
            del train_model
        keras.backend.clear_session()
        gc.collect()

    entry["load_average"]["after"] = timing.load_average()
    entry["setup_s"]["total"] = time.perf_counter() - model_start
    # CPU seconds of this process (all threads): with `total`, shows how much the machine was shared.
    entry["setup_s"]["cpu_total"] = time.process_time() - cpu_start
    return entry


def compute_ratios(result):
    """{eff_name: {...}} twin / Eff for MACs, params and every timed column (> 1: Eff is better),
    and `speedup / MAC reduction` per column (1.0: time falls exactly as fast as MACs)."""
    by_name = {e["model"]: e for e in result["results"] if e.get("status") == "ok"}
    ratios = {}
    for entry in result["results"]:
        twin = by_name.get(entry.get("twin")) if entry.get("twin") else None
        if entry.get("status") != "ok" or twin is None:
            continue
        mac_reduction = report.ratio(twin.get("macs"), entry.get("macs"))
        row = {
            "twin": twin["model"],
            "macs_reduction": mac_reduction,
            "params_reduction": report.ratio(twin.get("params"), entry.get("params")),
            "speedup": {},
            "speedup_over_mac_reduction": {},
        }
        for key, _ in result["columns"]:
            speedup = report.ratio(report.median_ms(twin, key), report.median_ms(entry, key))
            row["speedup"][key] = speedup
            row["speedup_over_mac_reduction"][key] = report.ratio(speedup, mac_reduction)
        ratios[entry["model"]] = row
    return ratios


def run_model_benchmark(config, build=None, available=None, log=print):
    """Run the benchmark described by `config` and return a JSON-ready dict.

    `build(name, **kwargs) -> keras.Model` and `available` (names) default to the package registry;
    tests pass tiny models instead.
    """
    config.validate()
    if build is None or available is None:
        registry_build, registry_names = _default_registry()
        build = build or registry_build
        available = registry_names if available is None else available
    available = list(available)
    to_run = plan(config, available)
    threads_info = timing.configure_threads(config.threads)
    if config.threads is None:
        config = dataclasses.replace(config, threads=threads_info["requested"])
    machine = timing.machine_info(threads=threads_info)
    warning = timing.busy_warning()
    if warning:
        log(warning)

    cols = columns(config)
    result = {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "config": dataclasses.asdict(config),
        "columns": cols,
        "notes": {
            "latency": "milliseconds per call; median and p90 over `runs` warm calls after `warmup` "
            "untimed calls (tracing / XLA compile / TFLite conversion excluded); outputs synced to numpy",
            "train": f"one optimizer step (train_on_batch, SGD momentum 0.9, sparse CE) at batch "
            f"{config.train_batch} and {config.train_image_size}x{config.train_image_size} input "
            f"({'XLA' if config.train_jit else 'TF runtime'})",
            "litert": f"to_tflite (TFLITE_BUILTINS only, fp32) + LiteRTRunner, XNNPACK, {config.threads} threads",
            "ratios": "twin / Eff: > 1 means the Eff model is cheaper (MACs, params) or faster (latency)",
        },
        "results": [],
    }
    log(f"Benchmarking {len(to_run)} model(s) at {config.image_size}x{config.image_size}: "
        f"{', '.join(n for n, _, _ in to_run) or '(none)'}")
    start, cpu_start = time.perf_counter(), time.process_time()
    for index, (name, role, twin) in enumerate(to_run, 1):
        log(f"[{index}/{len(to_run)}] {name}" + (f" (twin: {twin})" if twin else f" ({role})"))
        result["results"].append(bench_model(name, role, twin, config, build, log=log))
    result["elapsed_s"] = time.perf_counter() - start
    result["cpu_s"] = time.process_time() - cpu_start
    result["machine"]["load_average_at_end"] = timing.load_average()
    result["ratios"] = compute_ratios(result)
    return result
