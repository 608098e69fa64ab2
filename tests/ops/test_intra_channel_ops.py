"""ops.intra_channel: the "tf" and "xla" variants of the depthwise conv and its transpose equal the reference."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_effconv import implementation as impl
from keras_effconv.layers import IntraChannelConv2D
from keras_effconv.ops import intra_channel as ic
from keras_effconv.ops import padding
from tests import helpers

pairs = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))


def _close(a, b):
    b = np.asarray(b)
    assert np.shape(a) == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(b).max()))


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(3, 9), width=st.integers(3, 9), channels=st.integers(1, 5),
       kernel_size=st.tuples(st.integers(1, 4), st.integers(1, 4)), strides=pairs, dilation=pairs,
       padding=st.sampled_from(["same", "valid"]))
def test_depthwise_tf_equals_reference(height, width, channels, kernel_size, strides, dilation, padding):
    kh, kw = kernel_size
    dh, dw = _pair(dilation)
    if padding == "valid" and ((kh - 1) * dh >= height or (kw - 1) * dw >= width):
        return  # empty output
    x = tf.constant(helpers.random_input((2, height, width, channels)))
    kernel = tf.constant(helpers.random_input((kh, kw, channels, 1), seed=1))
    y_ref = ic.depthwise(x, kernel, "reference", strides, padding, dilation)
    _close(ic.depthwise(x, kernel, "tf", strides, padding, dilation), y_ref)
    _close(ic.depthwise_xla(x, kernel, strides, padding, dilation), y_ref)  # also correct eagerly


@settings(max_examples=15, deadline=None)
@given(height=st.integers(3, 8), width=st.integers(3, 8), kernel_size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       strides=pairs, dilation=pairs, padding=st.sampled_from(["same", "valid"]))
def test_depthwise_xla_equals_reference(height, width, kernel_size, strides, dilation, padding):
    kh, kw = kernel_size
    dh, dw = _pair(dilation)
    if padding == "valid" and ((kh - 1) * dh >= height or (kw - 1) * dw >= width):
        return
    x = tf.constant(helpers.random_input((2, height, width, 3)))
    kernel = tf.constant(helpers.random_input((kh, kw, 3, 1), seed=1))
    y_ref = ic.depthwise(x, kernel, "reference", strides, padding, dilation)
    fn = tf.function(lambda a, b: ic.depthwise(a, b, "xla", strides, padding, dilation), jit_compile=True)
    _close(fn(x, kernel), y_ref)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 7), width=st.integers(1, 7), channels=st.integers(1, 4),
       kernel_size=st.tuples(st.integers(1, 5), st.integers(1, 5)), factor=pairs)
def test_depthwise_transpose_tf_equals_reference(height, width, channels, kernel_size, factor):
    x = tf.constant(helpers.random_input((2, height, width, channels)))
    kernel = tf.constant(helpers.random_input((*kernel_size, channels, 1), seed=1))
    y_ref = ic.depthwise_transpose(x, kernel, factor, "reference")
    fh, fw = _pair(factor)
    assert tuple(y_ref.shape) == (2, height * fh, width * fw, channels)
    _close(ic.depthwise_transpose(x, kernel, factor, "tf"), y_ref)
    _close(ic.depthwise_transpose(x, kernel, factor, "xla"), y_ref)


@settings(max_examples=15, deadline=None)
@given(height=st.integers(1, 7), width=st.integers(1, 7), kernel_size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       factor=pairs)
def test_depthwise_transpose_xla_equals_reference(height, width, kernel_size, factor):
    x = tf.constant(helpers.random_input((2, height, width, 3)))
    kernel = tf.constant(helpers.random_input((*kernel_size, 3, 1), seed=1))
    y_ref = ic.depthwise_transpose(x, kernel, factor, "reference")
    fn = tf.function(lambda a, b: ic.depthwise_transpose(a, b, factor, "xla"), jit_compile=True)
    _close(fn(x, kernel), y_ref)


@pytest.mark.parametrize("height,width", [(5, 7), (4, 4)])
def test_transpose_is_adjoint_of_strided_same_conv(height, width):
    """<conv_s(z), x> == <z, conv_s^T(x)> for z of size H*s (the defining property of the transpose)."""
    factor, k = 2, 3
    x = tf.constant(helpers.random_input((1, height, width, 2)))
    z = tf.constant(helpers.random_input((1, height * factor, width * factor, 2), seed=2))
    kernel = tf.constant(helpers.random_input((k, k, 2, 1), seed=3))
    lhs = tf.reduce_sum(ic.depthwise(z, kernel, "reference", factor, "same") * x)
    for path in ("tf", "xla"):
        rhs = tf.reduce_sum(z * ic.depthwise_transpose(x, kernel, factor, path))
        np.testing.assert_allclose(rhs, lhs, rtol=1e-5)


@pytest.mark.parametrize("path", ["tf", "xla"])
def test_gradients_equal_reference(path):
    x = tf.constant(helpers.random_input((2, 7, 6, 3)))
    kernel = tf.Variable(helpers.random_input((3, 3, 3, 1), seed=1))

    def run(p, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ic.depthwise(x, kernel, p, 2, "same", 1)
            y = ic.depthwise_transpose(y, kernel, 2, p)
            loss = tf.reduce_sum(y * tf.constant(helpers.random_input(y.shape, seed=5)))
        return [y] + tape.gradient(loss, [x, kernel])

    ref = run("reference", x)
    got = tf.function(lambda v: run(path, v), jit_compile=True)(x) if path == "xla" else run(path, x)
    for a, b in zip(got, ref):
        _close(a, b)


def test_zero_stuff():
    x = helpers.random_input((2, 3, 4, 5))
    z = np.asarray(ic.zero_stuff(tf.constant(x), (2, 3)))
    assert z.shape == (2, 6, 12, 5)
    np.testing.assert_array_equal(z[:, ::2, ::3], x)
    mask = np.ones(z.shape, bool)
    mask[:, ::2, ::3] = False
    np.testing.assert_array_equal(z[mask], 0.0)


def test_resolve_picks_xla_under_jit_and_reference_under_policy():
    seen = []

    @tf.function(jit_compile=True)
    def compiled():
        seen.append(impl.resolve())
        return tf.constant(0.0)

    compiled()
    assert seen == ["xla"]
    assert impl.resolve() == "tf"
    with impl.implementation("reference"):
        assert impl.resolve() == "reference"
        assert impl.resolve("fast") == "tf"
    assert impl.resolve("reference") == "reference"
    assert impl.get_implementation() == "auto"


@pytest.mark.parametrize("size,kernel,stride,dilation", [(7, 3, 2, 1), (8, 3, 2, 1), (8, 4, 3, 2), (5, 1, 1, 1)])
def test_same_padding_matches_tf(size, kernel, stride, dilation):
    before, after = padding.same_pads(size, kernel, stride, dilation)
    x = tf.constant(helpers.random_input((1, size, 1, 1)))
    w = tf.constant(helpers.random_input((kernel, 1, 1, 1), seed=1))
    same = tf.nn.conv2d(x, w, (stride, 1), "SAME", dilations=(dilation, 1))
    padded = tf.nn.conv2d(tf.pad(x, [[0, 0], [before, after], [0, 0], [0, 0]]), w, (stride, 1), "VALID",
                          dilations=(dilation, 1))
    _close(padded, same)
    assert padding.output_length(size, kernel, stride, dilation, "same") == same.shape[1]
    assert padding.output_length(size, kernel, stride, dilation, "valid") == \
        tf.nn.conv2d(x, w, (stride, 1), "VALID", dilations=(dilation, 1)).shape[1]


def test_valid_output_that_would_be_empty_raises():
    with pytest.raises(ValueError, match="no output"):
        padding.output_length(2, 3, 1, 1, "valid")
    with pytest.raises(ValueError, match=r"IntraChannelConv2D .*input_shape=\(1, 2, 9, 4\)"):
        IntraChannelConv2D(3, padding="valid").compute_output_shape((1, 2, 9, 4))


@pytest.mark.parametrize("path", ["tf", "xla"])
@pytest.mark.parametrize("strides,dilation", [(2, 2), (1, 2), (2, 1)])
def test_depthwise_unknown_spatial_size(path, strides, dilation):
    """Regression: strides with dilation (tf) and the shift-and-add (xla) needed static sizes."""
    x = tf.constant(helpers.random_input((2, 7, 9, 3)))
    kernel = tf.constant(helpers.random_input((3, 3, 3, 1), seed=1))
    fn = tf.function(lambda v: ic.depthwise(v, kernel, path, strides, "same", dilation),
                     input_signature=[tf.TensorSpec((None, None, None, 3))], jit_compile=path == "xla")
    _close(fn(x), ic.depthwise(x, kernel, "reference", strides, "same", dilation))


@pytest.mark.parametrize("path", ["tf", "xla"])
def test_depthwise_transpose_unknown_spatial_size(path):
    x = tf.constant(helpers.random_input((2, 3, 5, 3)))
    kernel = tf.constant(helpers.random_input((3, 3, 3, 1), seed=1))
    fn = tf.function(lambda v: ic.depthwise_transpose(v, kernel, 2, path),
                     input_signature=[tf.TensorSpec((None, None, None, 3))], jit_compile=path == "xla")
    _close(fn(x), ic.depthwise_transpose(x, kernel, 2, "reference"))
