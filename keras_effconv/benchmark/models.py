"""Model benchmark: each Eff model against its keras.applications twin, plus reference models.

One run measures, per model: MACs (`keras_effconv.analysis.count_macs`) and params; inference latency
at each batch size under (a) the TF runtime (`tf.function`, `jit_compile=False`), (b) XLA
(`jit_compile=True`), (c) LiteRT (`to_tflite` builtins only + `LiteRTRunner`, XNNPACK); and (d) one
training step (`train_on_batch`, SGD with momentum, sparse categorical cross-entropy). An Eff model
and its twin are timed in turn (`timing.measure_in_turn`: several rounds, alternating), so a change
of load during the run hits both alike. Ratios are twin / Eff ("x times faster / fewer"), so > 1
means the Eff model wins. ImageNet-size models run at `image_size`, CIFAR-size ones at 32x32.

Entry point: `run_model_benchmark(config)` -> JSON-ready dict; `model_report` prints and plots it.
What runs is `model_plan`'s (suites, config, groups); `effconv bench` (`keras_effconv.cli.bench`)
wires them up.
"""

import contextlib
import dataclasses
import gc
import time

import numpy as np

from keras_effconv.benchmark import report
from keras_effconv.benchmark import timing
from keras_effconv.benchmark.model_plan import RUNTIME_LABELS
from keras_effconv.benchmark.model_plan import columns
from keras_effconv.benchmark.model_plan import plan

SCHEMA = "keras_effconv.bench.models/2"


def _default_registry():
    from keras_effconv.applications import registry

    return registry.get_model, registry.available_models(), registry.twin_of, registry.default_size


def _input(rng, batch, size):
    return rng.standard_normal((batch, size, size, 3)).astype("float32")


@contextlib.contextmanager
def _charged(entry):
    """Add the wall and CPU seconds of the body to the model's `total` / `cpu_total`."""
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        entry["setup_s"]["total"] += time.perf_counter() - start
        entry["setup_s"]["cpu_total"] += time.process_time() - cpu_start


def _new_entry(planned):
    return {
        "model": planned.name, "role": planned.role, "twin": planned.twin, "status": "ok",
        "image_size": planned.image_size, "train_image_size": planned.train_image_size,
        "macs": None, "params": None, "timings": {}, "setup_s": {"total": 0.0, "cpu_total": 0.0},
        "litert_builtins_only": None, "load_average": {"before": timing.load_average()},
    }


def _time_in_turn(entries, key, label, calls, runs, warmup, rounds, log):
    """Time `calls` ({name: fn}) in turn; store each Timing (or error) under `key`, log one line each."""
    if not calls:
        return
    measured = timing.measure_in_turn(calls, runs=runs, warmup=warmup, rounds=rounds)
    for name, result in measured.timings.items():
        entry = entries[name]
        entry["setup_s"]["total"] += measured.wall_s[name]
        entry["setup_s"]["cpu_total"] += measured.cpu_s[name]
        if isinstance(result, BaseException):
            entry["timings"][key] = {"error": timing.error_summary(result)}
            log(f"  {name:<16} {label:<22} ERROR {timing.error_summary(result, 160)}")
            continue
        entry["timings"][key] = result.to_dict()
        entry["setup_s"][f"{key}_first_call"] = result.first_call_s
        log(f"  {name:<16} {label:<22} median {report.fmt_ms(result.median_ms):>8} ms  "
            f"p90 {report.fmt_ms(result.p90_ms):>8} ms  (first call {result.first_call_s:.2f} s)")


def _build(entry, build, size, log):
    """The model at `size`x`size` with MACs and params recorded, or None (the error recorded)."""
    from keras_effconv.analysis import count_macs

    name = entry["model"]
    start = time.perf_counter()
    try:
        with _charged(entry):
            model = build(name, weights=None, input_shape=(size, size, 3))
    except Exception as error:  # noqa: BLE001
        entry["status"] = "error"
        entry["error"] = f"build failed: {timing.error_summary(error)}"
        log(f"  {name:<16} build failed: {timing.error_summary(error, 200)}")
        return None
    entry["setup_s"]["build"] = time.perf_counter() - start
    entry["params"] = int(model.count_params())
    entry["macs"] = int(count_macs(model))
    log(f"  {name:<16} built at {size}x{size}: {entry['params'] / 1e6:.2f} M params, {entry['macs'] / 1e9:.3f} GMACs")
    return model


def _litert_runner(entry, model, config, rng, log):
    """Convert to a builtins-only flatbuffer and make a warm LiteRTRunner, or None (errors recorded)."""
    from keras_effconv.export import LiteRTRunner
    from keras_effconv.export import assert_builtins_only
    from keras_effconv.export import to_tflite

    name = entry["model"]

    def fail(message):
        for batch in config.litert_batches:
            entry["timings"][f"litert_b{batch}"] = {"error": message}
        log(f"  {name:<16} {message[:200]}")

    with _charged(entry):
        try:
            start = time.perf_counter()
            with timing.captured_output():
                flatbuffer = to_tflite(model)
            entry["setup_s"]["tflite_convert"] = time.perf_counter() - start
            entry["tflite_bytes"] = len(flatbuffer)
        except Exception as error:  # noqa: BLE001
            return fail(f"to_tflite failed: {timing.error_summary(error)}")
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
                runner(_input(rng, config.litert_batches[0], entry["image_size"]))  # create XNNPACK quietly
        except Exception as error:  # noqa: BLE001
            return fail(timing.error_summary(error))
    return runner


def _bench_inference(entries, models, config, rng, log):
    import tensorflow as tf

    for runtime, jit in (("tf", False), ("xla", True)):
        if runtime not in config.runtimes:
            continue
        fns = {n: tf.function(lambda x, m=m: m(x, training=False), jit_compile=jit, reduce_retracing=False)
               for n, m in models.items()}
        for batch in config.batches:
            inputs = {n: tf.constant(_input(rng, batch, entries[n]["image_size"])) for n in fns}
            calls = {n: (lambda f=fns[n], x=inputs[n]: timing.sync(f(x))) for n in fns}
            _time_in_turn(entries, f"{runtime}_b{batch}", f"{RUNTIME_LABELS[runtime]} b{batch}", calls,
                          config.runs, config.warmup, config.rounds, log)
        fns = None  # free the traced graphs before the next runtime
    if "litert" in config.runtimes and config.litert_batches:
        runners = {n: _litert_runner(entries[n], m, config, rng, log) for n, m in models.items()}
        runners = {n: r for n, r in runners.items() if r is not None}
        for batch in config.litert_batches:
            inputs = {n: _input(rng, batch, entries[n]["image_size"]) for n in runners}
            calls = {n: (lambda r=runners[n], x=inputs[n]: r(x)) for n in runners}
            _time_in_turn(entries, f"litert_b{batch}", f"LiteRT b{batch}", calls,
                          config.runs, config.warmup, config.rounds, log)
        runners = None
        gc.collect()


def _bench_training(entries, group, config, build, rng, log):
    import keras

    key, label = config.train_label([p.train_image_size for p in group])
    calls = {}
    for planned in group:
        entry = entries[planned.name]
        if entry["status"] != "ok" or (planned.role == "reference" and not config.train_references):
            continue
        size = planned.train_image_size
        try:
            with _charged(entry):
                model = build(planned.name, weights=None, input_shape=(size, size, 3))
                model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                              loss="sparse_categorical_crossentropy", jit_compile=bool(config.train_jit))
                x = _input(rng, config.train_batch, size)
                y = rng.integers(0, int(model.outputs[0].shape[-1]), size=(config.train_batch,)).astype("int32")
        except Exception as error:  # noqa: BLE001
            entry["timings"][key] = {"error": f"train setup failed: {timing.error_summary(error)}"}
            log(f"  {planned.name:<16} {label}: setup failed: {timing.error_summary(error, 200)}")
            continue
        calls[planned.name] = lambda m=model, x=x, y=y: m.train_on_batch(x, y)
    # The 1st call builds the optimizer and traces; one more untimed call unless --quick.
    warmup = config.warmup if config.quick else max(2, config.warmup)
    _time_in_turn(entries, key, label, calls, config.train_runs, warmup, config.rounds, log)


def bench_group(group, config, build, log=print):
    """Measure the models of one `plan` group (an Eff model and its twin, or one model) in turn, each
    cell over `config.rounds` alternating rounds. Never raises: errors are recorded in the entries.
    Returns one entry per model, in the group's order."""
    import keras

    entries = {p.name: _new_entry(p) for p in group}
    rng = np.random.default_rng(config.seed)
    models = {}
    for planned in group:
        model = _build(entries[planned.name], build, planned.image_size, log)
        if model is not None:
            models[planned.name] = model
    if models:
        _bench_inference(entries, models, config, rng, log)
    models = None
    keras.backend.clear_session()
    gc.collect()
    if "train" in config.runtimes:
        _bench_training(entries, group, config, build, rng, log)
        keras.backend.clear_session()
        gc.collect()
    for entry in entries.values():
        entry["load_average"]["after"] = timing.load_average()
    return [entries[p.name] for p in group]


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


def run_model_benchmark(config, build=None, available=None, twin_of=None, default_size=None, log=print):
    """Run the benchmark described by `config` and return a JSON-ready dict.

    `build(name, **kwargs) -> keras.Model`, `available` (names), `twin_of(name)` and
    `default_size(name)` default to the package registry's; tests pass tiny models instead.
    """
    config.validate()
    if None in (build, available, twin_of, default_size):
        registry_build, registry_names, registry_twin_of, registry_default_size = _default_registry()
        build = build or registry_build
        available = registry_names if available is None else available
        twin_of = twin_of or registry_twin_of
        default_size = default_size or registry_default_size
    groups = plan(config, list(available), twin_of, default_size)
    planned = [p for group in groups for p in group]
    threads_info = timing.configure_threads(config.threads)
    if config.threads is None:
        config = dataclasses.replace(config, threads=threads_info["requested"])
    machine = timing.machine_info(threads=threads_info)
    warning = timing.busy_warning()
    if warning:
        log(warning)

    sizes = sorted({p.image_size for p in planned}, reverse=True)
    train_sizes = sorted({p.train_image_size for p in planned}, reverse=True)
    result = {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "config": dataclasses.asdict(config),
        "columns": columns(config, planned),
        "notes": {
            "latency": "milliseconds per call; median and p90 over `runs` warm calls after `warmup` "
            "untimed calls (tracing / XLA compile / TFLite conversion excluded); outputs synced to numpy; "
            f"an Eff model and its twin timed in turn over {config.rounds} alternating rounds",
            "input": "inference at " + " / ".join(f"{s}x{s}" for s in sizes) + " (each model's `image_size`)",
            "train": f"one optimizer step (train_on_batch, SGD momentum 0.9, sparse CE) at batch "
            f"{config.train_batch} and " + " / ".join(f"{s}x{s}" for s in train_sizes) + " input "
            f"(each model's `train_image_size`; {'XLA' if config.train_jit else 'TF runtime'})",
            "litert": f"to_tflite (TFLITE_BUILTINS only, fp32) + LiteRTRunner, XNNPACK, {config.threads} threads",
            "ratios": "twin / Eff: > 1 means the Eff model is cheaper (MACs, params) or faster (latency)",
        },
        "results": [],
    }
    log(f"Benchmarking {len(planned)} model(s): "
        + (", ".join(f"{p.name}@{p.image_size}" for p in planned) or "(none)"))
    start, cpu_start = time.perf_counter(), time.process_time()
    for index, group in enumerate(groups, 1):
        names = " vs ".join(p.name for p in group)
        log(f"[{index}/{len(groups)}] {names}" + (f" ({group[0].role})" if len(group) == 1 else " (in turn)"))
        result["results"].extend(bench_group(group, config, build, log=log))
    result["elapsed_s"] = time.perf_counter() - start
    result["cpu_s"] = time.process_time() - cpu_start
    result["machine"]["load_average_at_end"] = timing.load_average()
    result["ratios"] = compute_ratios(result)
    return result
