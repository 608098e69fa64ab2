"""Harness logic of `effconv bench` and tools/bench_layers.py: tiny models, a couple of runs, the
JSON schema. Nothing here asserts on timings."""

import argparse
import json
import types

import keras
import numpy as np
import pytest

from keras_effconv import implementation as impl
from keras_effconv.benchmark import layer_report
from keras_effconv.benchmark import layers as layer_bench
from keras_effconv.benchmark import model_plan
from keras_effconv.benchmark import model_report
from keras_effconv.benchmark import models as model_bench
from keras_effconv.benchmark import report
from keras_effconv.benchmark import timing
from keras_effconv.cli import bench as cli_bench

TIMING_KEYS = {"median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "runs", "warmup", "first_call_s", "samples_ms"}


# ---------------------------------------------------------------- timing and formatting


def test_timing_from_samples_statistics():
    t = timing.Timing.from_samples([0.001 * v for v in range(1, 11)], warmup=2, first_call_s=0.5)
    assert t.median_ms == pytest.approx(5.5)
    assert t.p90_ms == pytest.approx(np.percentile(np.arange(1, 11), 90))
    assert (t.min_ms, t.max_ms, t.runs, t.warmup) == (pytest.approx(1.0), pytest.approx(10.0), 10, 2)
    assert set(t.to_dict()) == TIMING_KEYS


def test_measure_counts_calls_and_validates():
    calls = []
    t = timing.measure(lambda: calls.append(1), runs=4, warmup=3)
    assert len(calls) == 7 and t.runs == 4 and len(t.samples_ms) == 4
    with pytest.raises(ValueError, match="runs"):
        timing.measure(lambda: None, runs=0)
    with pytest.raises(ValueError, match="warmup"):
        timing.measure(lambda: None, runs=1, warmup=0)
    with pytest.raises(ValueError, match="samples_s"):
        timing.Timing.from_samples([])

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        timing.measure(boom, runs=1, warmup=1)


def test_measure_in_turn_alternates_rounds_and_isolates_errors():
    calls = []

    def failing_later():
        calls.append("C")
        if calls.count("C") > 2:
            raise RuntimeError("third call fails")

    fns = {"A": lambda: calls.append("A"), "B": lambda: calls.append("B"), "C": failing_later}
    measured = timing.measure_in_turn(fns, runs=4, warmup=1, rounds=2)
    # warm-up of each, then round 1 in order (2 runs each), round 2 reversed; C stops at its error.
    assert "".join(calls) == "ABC" + "AABBCC" + "BBAA"
    assert measured.timings["A"].runs == measured.timings["B"].runs == 4
    assert isinstance(measured.timings["C"], RuntimeError)
    assert set(measured.wall_s) == set(fns) and all(v >= 0 for v in measured.cpu_s.values())
    assert len(measured.cpu_ms["A"]) == 4 and all(v >= 0 for v in measured.cpu_ms["A"])
    with pytest.raises(ValueError, match="rounds=0"):
        timing.measure_in_turn(fns, rounds=0)


def test_interleaved_median_ms_times_two_functions_in_turn_and_raises_errors():
    calls = []
    wall_a, wall_b, cpu_a, cpu_b = timing.interleaved_median_ms(
        lambda v: calls.append(("a", v)) or 1.0, (1,), lambda v: calls.append(("b", v)) or 2.0, (2,), runs=3, warmup=1)
    assert calls == [("a", 1), ("b", 2), ("a", 1), ("b", 2), ("b", 2), ("a", 1), ("a", 1), ("b", 2)]
    assert min(wall_a, wall_b, cpu_a, cpu_b) >= 0

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        timing.interleaved_median_ms(boom, (), lambda: 1.0, (), runs=1, warmup=1)


def test_format_table_aligns_columns():
    text = report.format_table(["Model", "ms"], [["A", "1.00"], ["LongName", "123.45"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # all rows padded to the same width
    assert lines[2].startswith("A ") and lines[2].endswith("  1.00")
    with pytest.raises(ValueError, match="cells"):
        report.format_table(["a", "b"], [["only one"]])


def test_ratio_and_json_handle_missing_values():
    assert report.ratio(4, 2) == 2.0
    assert report.ratio(None, 2) is None and report.ratio(1, 0) is None
    assert json.loads(report.to_json_text({"x": float("nan"), "t": (1, 2)})) == {"x": None, "t": [1, 2]}


# ---------------------------------------------------------------- model benchmark


def _tiny(width):
    def factory(weights=None, input_shape=(32, 32, 3), classes=10):
        assert weights is None
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))

    return factory


def _broken(**kwargs):
    raise RuntimeError("cannot build")


FACTORIES = {"Tiny": _tiny(8), "EffTiny": _tiny(4), "EffBroken": _broken, "Small": _tiny(2), "EffSmall": _tiny(2)}
TWINS = {"EffTiny": "Tiny", "EffSmall": "Small"}.get
SIZES = {"Small": 16, "EffSmall": 16, "Tiny": 224}.get  # the registry's default sizes: "Small" is CIFAR-size


def _build(name, **kwargs):
    return FACTORIES[name](**kwargs)


def _config(**overrides):
    """A quick run of the tiny models: 32x32, TF/XLA at batches 1 and 2, LiteRT at 1, two timed runs in
    two rounds."""
    values = dict(models=("EffTiny", "EffBroken"), image_size=32, batches=(1, 2), train_image_size=32, train_batch=4,
                  runs=2, train_runs=2, rounds=2, train_references=True, add_twins=False)
    values.update(overrides)
    return model_plan.ModelBenchConfig.quick_run(**values)


def _names(groups):
    return [[(p.name, p.role, p.twin) for p in group] for group in groups]


def test_plan_groups_each_eff_model_with_its_twin_and_rejects_unknown_models():
    groups = model_plan.plan(_config(models=("Tiny", "EffTiny")), list(FACTORIES), TWINS)
    assert _names(groups) == [[("EffTiny", "eff", "Tiny"), ("Tiny", "twin", None)]]  # the twin joins its pair
    groups = model_plan.plan(_config(models=("EffTiny", "EffSmall"), add_twins=True), list(FACTORIES), TWINS)
    assert _names(groups) == [[("EffTiny", "eff", "Tiny"), ("Tiny", "twin", None)],
                              [("EffSmall", "eff", "Small"), ("Small", "twin", None)]]
    no_twins = model_plan.plan(_config(models=("EffTiny", "Small")), list(FACTORIES), TWINS)
    assert _names(no_twins) == [[("EffTiny", "eff", "Tiny")], [("Small", "reference", None)]]
    with pytest.raises(ValueError, match="EffGhost"):
        model_plan.plan(_config(models=("EffTiny", "EffGhost")), list(FACTORIES), TWINS)
    assert model_plan.columns(_config()) == [
        ("tf_b1", "TF b1"), ("xla_b1", "XLA b1"), ("litert_b1", "LiteRT b1"),
        ("tf_b2", "TF b2"), ("xla_b2", "XLA b2"), ("train_b4", "Train b4@32 (TF)"),
    ]


def test_plan_runs_cifar_size_models_at_their_own_size():
    config = _config(models=("EffTiny", "EffSmall"), add_twins=True, image_size=48, train_image_size=40)
    planned = [p for group in model_plan.plan(config, list(FACTORIES), TWINS, SIZES) for p in group]
    sizes = {p.name: (p.image_size, p.train_image_size) for p in planned}
    # Tiny is ImageNet-size (224): --image-size; EffTiny has no registered size: --image-size too.
    assert sizes == {"EffTiny": (48, 40), "Tiny": (48, 40), "EffSmall": (16, 16), "Small": (16, 16)}
    assert model_plan.columns(config, planned)[-1] == ("train_b4", "Train b4@40/16 (TF)")


def test_suites_take_the_pairs_from_the_registry():
    from keras_effconv import applications

    cifar = model_plan.ModelBenchConfig.for_suite("cifar")
    assert (cifar.batches, cifar.litert_batches, cifar.train_batch) == ((1, 256), (1,), 128)
    groups = model_plan.plan(cifar, applications.available_models(), applications.twin_of,
                             applications.registry.default_size)
    assert _names(groups) == [[("EffResNet20", "eff", "ResNet20"), ("ResNet20", "twin", None)],
                              [("EffResNet56", "eff", "ResNet56"), ("ResNet56", "twin", None)],
                              [("EffSICNet8", "reference", None)], [("EffSICNet11", "reference", None)],
                              [("MobileNetV2CIFAR", "reference", None)]]
    assert {p.image_size for group in groups for p in group} == {32}
    imagenet = model_plan.plan(model_plan.ModelBenchConfig(), applications.available_models(), applications.twin_of,
                               applications.registry.default_size)
    assert [p.name for group in imagenet for p in group] == [
        "EffResNet50", "ResNet50", "EffResNet101", "ResNet101", "EffVGG16", "VGG16", "MobileNetV2", "EfficientNetB0"]
    with pytest.raises(ValueError, match="suite='mnist'"):
        model_plan.ModelBenchConfig.for_suite("mnist")


def test_cifar_suite_smoke_on_the_registry():
    """The real registry: a CIFAR pair built at 32x32 and timed in turn (TF b1, one run), ratios present."""
    config = model_plan.ModelBenchConfig.for_suite("cifar", models=("EffResNet20",), runtimes=("tf",), batches=(1,),
                                                   runs=1, rounds=1, warmup=1)
    result = model_bench.run_model_benchmark(config, log=lambda message: None)
    assert [(e["model"], e["image_size"], e["status"]) for e in result["results"]] == [
        ("EffResNet20", 32, "ok"), ("ResNet20", 32, "ok")]
    assert result["ratios"]["EffResNet20"]["twin"] == "ResNet20"
    assert result["ratios"]["EffResNet20"]["macs_reduction"] > 4 and result["columns"] == [("tf_b1", "TF b1")]


@pytest.fixture(scope="module")
def model_result():
    messages = []
    result = model_bench.run_model_benchmark(_config(add_twins=True), build=_build, available=list(FACTORIES),
                                             twin_of=TWINS, default_size=SIZES, log=messages.append)
    result["_log"] = messages
    return result


def test_model_benchmark_json_schema(model_result, tmp_path):
    path = report.write_json({k: v for k, v in model_result.items() if k != "_log"}, str(tmp_path / "bench.json"))
    data = json.loads(open(path).read())
    assert data["schema"] == model_bench.SCHEMA
    for key in ("cpu_count", "tensorflow", "keras", "ai_edge_litert", "threads", "load_average_at_start"):
        assert key in data["machine"]
    assert data["config"]["runs"] == 2 and data["config"]["image_size"] == 32
    by_name = {e["model"]: e for e in data["results"]}
    assert set(by_name) == {"EffTiny", "Tiny", "EffBroken"}
    assert by_name["EffBroken"]["status"] == "error" and "cannot build" in by_name["EffBroken"]["error"]
    for name in ("EffTiny", "Tiny"):
        entry = by_name[name]
        assert entry["status"] == "ok" and entry["params"] > 0
        assert entry["macs"] > 0
        assert entry["litert_builtins_only"] is True
        for key, _ in data["columns"]:
            cell = entry["timings"][key]
            assert set(cell) == TIMING_KEYS, (name, key, cell)
            assert cell["median_ms"] > 0 and cell["p90_ms"] >= cell["median_ms"] * 0.999
    assert by_name["EffTiny"]["timings"]["train_b4"]["runs"] == 2
    assert by_name["EffTiny"]["image_size"] == by_name["Tiny"]["image_size"] == 32
    assert by_name["Tiny"]["setup_s"]["total"] >= by_name["Tiny"]["setup_s"]["build"] > 0
    ratios = data["ratios"]["EffTiny"]
    assert ratios["twin"] == "Tiny" and ratios["params_reduction"] > 1
    assert set(ratios["speedup"]) == {key for key, _ in data["columns"]}


def test_model_report_prints_every_model_and_error(model_result):
    text = model_report.format_model_report(model_result)
    for needle in ("Latency, median ms", "Latency, p90 ms", "EffTiny vs Tiny", "EffBroken", "cannot build",
                   "Train b4@32 (TF)", "32x32 inference", "rounds=2"):
        assert needle in text
    assert any("EffBroken" in m for m in model_result["_log"])


def test_plot_or_install_hint(model_result, tmp_path):
    path = model_report.plot_models(model_result, str(tmp_path / "plot.png"))
    if report.import_pyplot() is None:
        assert path is None and "pip install" in report.PLOT_HINT
    else:
        assert (tmp_path / "plot.png").stat().st_size > 0


def test_config_validation():
    with pytest.raises(ValueError, match="runtimes"):
        _config(runtimes=("tf", "gpu")).validate()
    with pytest.raises(ValueError, match="batches"):
        _config(batches=(0,)).validate()


def test_cli_arguments_build_the_config():
    parser = cli_bench.add_arguments(argparse.ArgumentParser())
    quick = cli_bench.config_from_args(parser.parse_args(["--quick"]))
    assert quick.quick and quick.batches == (1,) and quick.runs < 10
    assert quick.train_image_size < 128 and quick.models == model_plan.SUITES["imagenet"].models
    cifar = cli_bench.config_from_args(parser.parse_args(["--suite", "cifar", "--rounds", "4"]))
    assert cifar.suite == "cifar" and cifar.models == model_plan.SUITES["cifar"].models and cifar.rounds == 4
    assert (cifar.batches, cifar.litert_batches, cifar.train_batch, cifar.runs) == ((1, 256), (1,), 128, 10)
    assert cli_bench.config_from_args(parser.parse_args(["--suite", "cifar", "--train-batch", "64"])).train_batch == 64
    full = cli_bench.config_from_args(
        parser.parse_args(["--models", "EffVGG16", "--batches", "1,8", "--runtimes", "tf,train",
                           "--train-image-size", "96", "--runs", "12"])
    )
    assert full.models == ("EffVGG16",) and full.batches == (1, 8) and full.litert_batches == (1, 8)
    assert full.runtimes == ("tf", "train") and full.train_image_size == 96 and full.runs == full.train_runs == 12
    assert cli_bench.run(parser.parse_args(["--runtimes", "tf,cuda"])) == 2


# ---------------------------------------------------------------- layer benchmark


class FakeEffConv(keras.layers.Layer):
    """Stands in for a keras_effconv layer: two paths that agree, and `compute_macs`."""

    def __init__(self, filters, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.implementation = impl.validate_policy(implementation)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.filters), name="kernel")

    def call(self, x, training=None):
        if impl.resolve(self.implementation) == "reference":
            return keras.ops.einsum("bhwc,cf->bhwf", x, self.kernel)
        return keras.ops.matmul(x, self.kernel)

    def compute_macs(self, input_shape):
        return int(np.prod(input_shape[1:])) * self.filters // 2  # pretend: half the dense MACs


FAKE_LAYERS = types.SimpleNamespace(FakeEffConv=FakeEffConv)
FAKE_CASES = (layer_bench.LayerCase("Fake 1x1", "FakeEffConv", lambda c: dict(filters=c), 1),)


def test_layer_benchmark_runs_and_reports(tmp_path):
    config = layer_bench.LayerBenchConfig(shapes=((8, 8, 8),), batch=2, runs=2, reference_runs=1, warmup=1)
    logs = []
    result = layer_bench.run_layer_benchmark(config, cases=FAKE_CASES, layers_module=FAKE_LAYERS, log=logs.append)
    data = json.loads(report.to_json_text(result))
    assert data["schema"] == layer_bench.SCHEMA
    assert [r["case"] for r in data["results"]] == ["Fake 1x1"]
    assert data["errors"] == []
    entry = data["results"][0]
    assert entry["macs"] == 8 * 8 * 8 * 8 // 2 and entry["dense_macs"] == 8 * 8 * 8 * 8
    assert entry["ratios"]["mac_ratio"] == pytest.approx(2.0)
    for variant in layer_bench.VARIANTS:
        for runtime in layer_bench.RUNTIMES:
            assert set(entry["timings"][variant][runtime]) >= TIMING_KEYS, (variant, runtime)
    assert entry["timings"]["reference"]["tf"]["runs"] == 1 and entry["timings"]["fast"]["tf"]["runs"] == 2
    for runtime in layer_bench.RUNTIMES:
        assert entry["fast_vs_reference_error"][runtime] < 1e-4  # same weights, same maths
        assert entry["ratios"]["per_runtime"][runtime]["efficiency"] > 0
    text = layer_report.format_layer_report(result)
    assert "Fake 1x1" in text and "MAC ratio" in text
    with pytest.raises(AttributeError, match="NotThereConv2D"):
        layer_bench.make_layer(layer_bench.LayerCase("Not there", "NotThereConv2D", dict, 3), 8, "auto", FAKE_LAYERS)


def test_layer_cases_table_is_well_formed():
    names = [c.name for c in layer_bench.CASES]
    assert len(names) == len(set(names))
    for case in layer_bench.CASES:
        kwargs = case.kwargs(256)
        # The reference/fast switch is the harness's; a case may only fix a layer-specific mode.
        assert kwargs.get("implementation") not in ("auto", "reference", "fast") and case.dense_kernel in (1, 3)
    config = layer_bench.LayerBenchConfig(cases=("topological",))
    assert all(c.class_name == "TopologicalConv2D" for c in layer_bench.selected_cases(config))
