"""ops.topology: the connectivity tables against a brute-force definition, and the fast plan."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_effconv.ops import topology as tp
from tests import helpers


def brute_force_mask(layout, neighborhood, out_channels):
    """Output o sits at flat position o*C_in//C_out and reads (p_t + a_t) mod d_t, a_t < c_t."""
    c_in = int(np.prod(layout))
    mask = np.zeros((c_in, out_channels), np.float32)
    for o in range(out_channels):
        position = np.unravel_index(o * c_in // out_channels, layout)
        for offset in itertools.product(*[range(c) for c in neighborhood]):
            coords = tuple((p + a) % d for p, a, d in zip(position, offset, layout))
            mask[np.ravel_multi_index(coords, layout), o] = 1.0
    return mask


@st.composite
def topologies(draw, max_channels=48):
    rank = draw(st.integers(1, 3))
    layout = tuple(draw(st.lists(st.integers(1, 8), min_size=rank, max_size=rank)))
    c_in = int(np.prod(layout))
    if c_in > max_channels:
        layout = (c_in % max_channels + 1,) + layout[1:] if rank == 1 else layout[:1] + (1,) * (rank - 1)
        c_in = int(np.prod(layout))
    neighborhood = tuple(draw(st.integers(1, d)) for d in layout)
    ratio = draw(st.sampled_from(["same", "double", "half", "third", "quarter"]))
    out = {"same": c_in, "double": 2 * c_in, "half": c_in // 2, "third": c_in // 3, "quarter": c_in // 4}[ratio]
    if out < 1 or c_in % out:
        out = c_in
    return layout, neighborhood, out


@settings(max_examples=50, deadline=None)
@given(topologies())
def test_mask_equals_brute_force(case):
    layout, neighborhood, out = case
    topology = tp.Topology(layout, neighborhood, int(np.prod(layout)), out)
    mask = topology.mask()
    np.testing.assert_array_equal(mask, brute_force_mask(layout, neighborhood, out))
    assert topology.window == int(np.prod(neighborhood))
    assert topology.connection_ratio == pytest.approx(np.prod(neighborhood) / np.prod(layout))
    np.testing.assert_array_equal(mask.sum(axis=0), topology.window)  # every output sees `window` inputs


def _kernel(topology, kh=3, kw=3, seed=3):
    return tf.constant(helpers.random_input((kh, kw, topology.window, topology.out_channels), seed=seed))


@settings(max_examples=25, deadline=None)
@given(topologies(max_channels=24), st.sampled_from([1, 2, (2, 1)]), st.sampled_from([1, 2]),
       st.sampled_from([(1, 1), (3, 3), (2, 3)]), st.sampled_from(["same", "valid"]), st.integers(5, 8))
def test_conv_fast_equals_reference(case, strides, dilation, kernel_size, padding, size):
    layout, neighborhood, out = case
    topology = tp.Topology(layout, neighborhood, int(np.prod(layout)), out)
    strides = strides if isinstance(strides, tuple) else (strides, strides)
    dilation = (dilation, dilation)
    x = tf.constant(helpers.random_input((2, size, size + 1, topology.in_channels)))
    kernel = _kernel(topology, *kernel_size)
    y_ref = tp.conv_reference(x, topology, kernel, strides, padding, dilation)
    y = tp.conv_fast(x, topology, kernel, strides, padding, dilation)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(y_ref).max()))


@pytest.mark.parametrize("layout,neighborhood,out", [((16,), (4,), 16), ((4, 4), (2, 3), 8), ((2, 3, 4), (1, 2, 3), 48),
                                                     ((4, 16), (1, 16), 64)])
def test_conv_fast_xla_and_gradients_equal_reference(layout, neighborhood, out):
    topology = tp.Topology(layout, neighborhood, int(np.prod(layout)), out)
    x = tf.constant(helpers.random_input((2, 6, 6, topology.in_channels)))
    kernel = tf.Variable(_kernel(topology))
    cot = tf.constant(helpers.random_input((2, 6, 6, out), seed=9))

    def run(fn, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, topology, kernel, (1, 1), "same", (1, 1))
            loss = tf.reduce_sum(y * cot)
        return [y] + tape.gradient(loss, [x, kernel])

    ref = run(tp.conv_reference, x)
    for got in (run(tp.conv_fast, x), tf.function(lambda v: run(tp.conv_fast, v), jit_compile=True)(x)):
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("layout,neighborhood,out", [((3,), (2,), 1), ((3, 1, 1), (2, 1, 1), 1), ((8,), (3,), 1),
                                                     ((4, 2), (3, 1), 2), ((6,), (4,), 2)])
def test_conv_fast_with_uneven_outputs(layout, neighborhood, out):
    """Regression: with outputs not spread evenly over the blocks (dense fallback) the zero slot ended a
    contiguous run of compact rows and the term kernel was sliced past the compact kernel."""
    topology = tp.Topology(layout, neighborhood, int(np.prod(layout)), out)
    x = tf.constant(helpers.random_input((2, 5, 5, topology.in_channels)))
    kernel = _kernel(topology)
    y_ref = tp.conv_reference(x, topology, kernel, (1, 1), "same", (1, 1))
    np.testing.assert_allclose(tp.conv_fast(x, topology, kernel, (1, 1), "same", (1, 1)), y_ref, rtol=1e-5, atol=1e-5)


def test_dense_kernel_scatters_compact_kernel():
    topology = tp.Topology((4, 4), (2, 3), 16, 8)
    compact = helpers.random_input((1, 1, topology.window, 8))
    dense = np.asarray(tp.dense_kernel(topology, tf.constant(compact)))[0, 0]
    mask = topology.mask()
    np.testing.assert_array_equal(dense[mask == 0], 0.0)
    assert np.all(dense[mask == 1] != 0)
    # Window element w of output o is input index[w, o]: the compact weight lands there.
    for o in range(8):
        for w in range(topology.window):
            assert dense[topology.index[w, o], o] == compact[0, 0, w, o]


@pytest.mark.parametrize("layout,neighborhood", [((4, 16), (1, 16)), ((8, 2), (1, 2)), ((16,), (1,)), ((16,), (16,)),
                                                 ((2, 2, 4), (1, 2, 4))])
def test_block_diagonal_layouts_need_no_gather(layout, neighborhood):
    topology = tp.Topology(layout, neighborhood)
    assert topology.gathers == 0
    assert len(topology.terms) == 1


def test_banded_layout_needs_one_gather_per_extra_term():
    topology = tp.Topology((16,), (4,))
    assert len(topology.terms) == 2
    assert topology.gathers == 1


def test_positions_spread_outputs_evenly():
    np.testing.assert_array_equal(tp.Topology((8,), (2,), 8, 4).positions(), [0, 2, 4, 6])
    np.testing.assert_array_equal(tp.Topology((4,), (2,), 4, 8).positions(), [0, 0, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("args,match", [
    (((4, 4), (2, 2), 12), r"layout=\(4, 4\)"),
    (((4, 4), (5, 1)), r"neighborhood=\(5, 1\)"),
    (((4, 4), (2,)), r"neighborhood=\(2,\)"),
    (((4, 4), (2, 2), 16, 24), r"filters=24"),
    (((4, 0), (1, 1)), r"layout=\(4, 0\)"),
    (((4, 4), (0, 1)), r"neighborhood=\(0, 1\)"),
    ((("a", 4), (1, 1)), r"layout="),
])
def test_invalid_topologies(args, match):
    with pytest.raises(ValueError, match=match):
        tp.Topology(*args)
