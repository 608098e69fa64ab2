"""Benchmarks: Eff models vs their keras.applications twins (`effconv bench`), and per-layer
reference / fast / dense comparisons (`tools/bench_layers.py`).

Heavy imports (TensorFlow, the layers, the registry) happen inside the functions, so importing this
package is cheap.
"""

from keras_effconv.benchmark.model_plan import SUITES
from keras_effconv.benchmark.model_plan import ModelBenchConfig
from keras_effconv.benchmark.model_report import format_model_report
from keras_effconv.benchmark.model_report import plot_models
from keras_effconv.benchmark.models import run_model_benchmark
from keras_effconv.benchmark.timing import Timing
from keras_effconv.benchmark.timing import measure
from keras_effconv.benchmark.timing import measure_in_turn
