"""Bad inputs and arguments give a ValueError naming the layer, never an abort or a silent wrong shape.

The issue-16 reproducers run in-process, and under -m slow in a fresh subprocess too (an abort there
fails the test instead of killing pytest); the fuzz suite (20 draws; 60 under -m slow) draws layer configurations and inputs (wrong ranks, dtypes, tiny sizes) and
checks that every layer either raises ValueError or matches its reference path and its declared shape.
"""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_effconv import implementation as impl
from keras_effconv import layers as L

REPRODUCERS = textwrap.dedent("""
    import numpy as np
    from keras_effconv import layers as L

    def error(make, x):
        try:
            y = make()(x)
        except ValueError as exc:
            return str(exc)
        return f"no error: shape {tuple(y.shape)}"

    print(error(lambda: L.TopologicalConv2D(16, 3), np.zeros((8, 8, 16), "float32")))
    print(error(lambda: L.IntraChannelConv2D(3, implementation="reference"), np.zeros((8, 8, 4), "float32")))
    print(error(lambda: L.IntraChannelConv2D(3), np.zeros((2, 3, 8, 8, 4), "float32")))
    for make in (lambda: L.SIConv2D(4), lambda: L.SpatialBottleneck(4), lambda: L.EffConv2D(4, 3)):
        print(error(make, np.zeros((8, 8, 4), "float32")))
        print(error(make, np.zeros((2, 3, 8, 8, 4), "float32")))
""")


def _assert_reproducer_errors(lines):
    assert len(lines) == 9
    for line in lines:
        assert not line.startswith("no error"), line
        assert "expected ndim=4" in line and "Full shape received" in line, line


@pytest.mark.slow  # a fresh interpreter imports TensorFlow (~20 s on 2 cores); the test below runs it in-process
def test_issue16_reproducers_raise_value_errors_in_a_fresh_process():
    run = subprocess.run([sys.executable, "-c", REPRODUCERS], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    _assert_reproducer_errors(run.stdout.strip().splitlines())


def test_issue16_reproducers_raise_value_errors(capsys):
    exec(compile(REPRODUCERS, "<issue16 reproducers>", "exec"), {})
    _assert_reproducer_errors(capsys.readouterr().out.strip().splitlines())


@pytest.mark.parametrize("make,match", [
    (lambda: L.TopologicalConv2D(16, 1, layout=(2.5, 8)), r"layout=\(2.5, 8\)"),
    (lambda: L.TopologicalConv2D(16, 1, layout=("4", 4)), "layout"),
    (lambda: L.TopologicalConv2D(16, 1, layout=(True, 16)), "layout"),
    (lambda: L.TopologicalConv2D(16.0), "filters=16.0"),
    (lambda: L.IntraChannelConv2D(True), "kernel_size=True"),
    (lambda: L.IntraChannelConv2D("3"), "kernel_size='3'"),
    (lambda: L.IntraChannelConv2D(3, strides=1.5), "strides=1.5"),
    (lambda: L.SIConv2D(8, depth=2.0), "depth=2.0"),
    (lambda: L.SIConv2D(8, momentum=1.5), "momentum=1.5"),
    (lambda: L.SIConv2D(8, epsilon="small"), "epsilon='small'"),
    (lambda: L.SpatialBottleneck(8, factor=False), "factor=False"),
    (lambda: L.EffConv2D(8, 3, use_bias="yes"), "use_bias='yes'"),
    (lambda: L.FactorizedConv2D(8, 3, rank=2.5), "rank"),
    (lambda: L.DecoupledConv2D(8, 3, intermediate_channels=16.0), "intermediate_channels=16.0"),
    (lambda: L.GroupChannelWiseConv(2, kernel_size=8.0), "kernel_size=8.0"),
    (lambda: L.ConvClassifier(10, use_bias=1), "use_bias=1"),
])
def test_numeric_arguments_are_type_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make,shape,match", [
    (lambda: L.IntraChannelConv2D(3, padding="valid"), (1, 2, 8, 4), r"IntraChannelConv2D .*input_shape=\(1, 2, 8, 4\)"),
    (lambda: L.TopologicalConv2D(8, 5, padding="valid"), (1, 4, 8, 4), "TopologicalConv2D"),
    (lambda: L.DecoupledConv2D(8, 3, padding="valid"), (1, 8, 2, 4), "DecoupledConv2D"),
    (lambda: L.FactorizedConv3D(8, 3, 2), (1, 8, 8, 4), r"rank-5"),
    (lambda: L.StructuredConv2D(8, 3, (2, 2)), (1, 8, 8, None), "known channel"),
    (lambda: L.GroupChannelWiseConv(3), (1, 4, 4, 8), "groups=3"),
    (lambda: L.ConvClassifier(10), (1, 4, 4, 8), "classes=10"),
])
def test_bad_shapes_name_the_layer(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make().compute_output_shape(shape)


def test_built_layer_rejects_other_channels_and_integer_inputs():
    layer = L.IntraChannelConv2D(3)
    layer(np.zeros((1, 5, 5, 4), "float32"))
    with pytest.raises(ValueError, match="axis -1"):
        layer(np.zeros((1, 5, 5, 6), "float32"))
    with pytest.raises(ValueError, match="floating-point input; received dtype=int32"):
        L.TopologicalConv2D(4)(np.zeros((1, 5, 5, 4), "int32"))


# ---- fuzz suite ------------------------------------------------------------------------------------

def _factories(draw):
    k = draw(st.sampled_from([1, 2, 3]))
    s = draw(st.sampled_from([1, 2]))
    pad = draw(st.sampled_from(["same", "valid"]))
    f = draw(st.sampled_from([4, 8]))
    execution = draw(st.sampled_from(["factorized", "mobilenet", "reconstructed"]))
    return {
        "IntraChannelConv2D": lambda: L.IntraChannelConv2D(k, strides=s, padding=pad),
        "IntraChannelConv2DTranspose": lambda: L.IntraChannelConv2DTranspose(k, strides=s),
        "TopologicalConv2D": lambda: L.TopologicalConv2D(f, k, layout=(2, 4), neighborhood=(1, 4), strides=s,
                                                         padding=pad),
        "SIConv2D": lambda: L.SIConv2D(f, k, strides=s, topology={"blocks": 2, "band": 1}),
        "SpatialBottleneck": lambda: L.SpatialBottleneck(f, factor=2, kernel_size=k),
        "EffConv2D": lambda: L.EffConv2D(f, k, strides=s, sic=False, padding=pad),
        "FactorizedConv2D": lambda: L.FactorizedConv2D(f, k, 2, execution=execution, strides=s, padding=pad, seed=0),
        "DecoupledConv2D": lambda: L.DecoupledConv2D(f, k, strides=s, padding=pad),
        "StructuredConv2D": lambda: L.StructuredConv2D(f, max(k, 2), (2, 2), strides=s, padding=pad),
        "GroupChannelWiseConv": lambda: L.GroupChannelWiseConv(2),
        "DepthwiseSeparableChannelWiseConv": lambda: L.DepthwiseSeparableChannelWiseConv(k, 4, strides=s,
                                                                                         padding=pad),
        "DepthwiseSeparableBlock": lambda: L.DepthwiseSeparableBlock(f, k, strides=s),
        "ConvClassifier": lambda: L.ConvClassifier(3),
    }


@st.composite
def cases(draw):
    factories = _factories(draw)
    name = draw(st.sampled_from(sorted(factories)))
    rank = draw(st.sampled_from([4, 4, 4, 3, 5]))
    spatial = draw(st.lists(st.integers(1, 7), min_size=rank - 2, max_size=rank - 2))
    shape = (draw(st.integers(1, 2)), *spatial, draw(st.sampled_from([8, 8, 6])))
    dtype = draw(st.sampled_from(["float32", "float32", "float32", "int32"]))
    return name, factories[name], shape, dtype


def _check_case(case):
    """The layer raises ValueError, or its output has the declared shape and equals the reference path."""
    name, make, shape, dtype = case
    x = (np.arange(np.prod(shape)).reshape(shape) % 5 - 2).astype(dtype)
    try:
        layer = make()
        y = layer(x)
    except ValueError:
        return
    keras_shape = layer.compute_output_shape(shape)
    assert tuple(y.shape) == tuple(keras_shape), f"{name}: output {tuple(y.shape)} vs declared {keras_shape}"
    assert dtype.startswith("float") and len(shape) == layer.input_rank, f"{name} accepted {dtype} {shape}"
    with impl.implementation("reference"):
        y_ref = layer(x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-4, atol=1e-4 * max(1.0, np.abs(y_ref).max()),
                               err_msg=name)
    keras.backend.clear_session()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fuzz_layers_match_reference_or_raise_value_error(case):
    _check_case(case)


@pytest.mark.slow  # the same property on 3x the draws
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fuzz_layers_match_reference_or_raise_value_error_long(case):
    _check_case(case)
