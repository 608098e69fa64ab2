"""The optional C++ ops (`keras_effconv.ops.custom`): forward vs the composite TF reference,
gradients, shape inference, build/load error reporting, CUDA (skipped without a GPU build).

The library is built once per machine/TF/source version and cached (~15 s on the 2-core machine),
so the default run stays well under a minute. Everything that needs the library skips with the
build/load error as the reason when it is unavailable (e.g. no C++ compiler).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.ops import custom


@pytest.fixture(scope="module")
def lib():
    try:
        return custom.load_custom_ops()
    except custom.CustomOpsError as exc:
        pytest.skip(f"keras_effconv custom ops unavailable: {exc}")


def _rng(seed):
    return np.random.default_rng(seed)


def _topo_case(n, h, w, cin, cout, window, seed=0, replace=False):
    rng = _rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype("float32")
    if replace:
        index = rng.integers(0, cin, size=(window, cout))
    else:
        index = np.stack([rng.permutation(cin)[:window] for _ in range(cout)], axis=1)
    kernel = rng.standard_normal((window, cout)).astype("float32")
    return tf.constant(x), tf.constant(kernel), tf.constant(index.astype("int32"))


def _sic_case(n, h, w, c, k, seed=0):
    rng = _rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype("float32")
    dw = (rng.standard_normal((k, k, c)) / k).astype("float32")
    proj = (rng.standard_normal((c, c)) / np.sqrt(c)).astype("float32")
    scale = rng.uniform(0.5, 1.5, c).astype("float32")
    bias = (0.1 * rng.standard_normal(c)).astype("float32")
    return tuple(tf.constant(a) for a in (x, dw, proj, scale, bias))


# ------------------------------------------------------------------------------------------------
# Forward
# ------------------------------------------------------------------------------------------------

TOPO_SHAPES = [  # n, h, w, cin, cout, window
    (2, 5, 7, 13, 9, 3),
    (1, 4, 4, 16, 32, 4),
    (3, 3, 5, 37, 21, 37),  # window == cin: a dense 1x1
    (1, 1, 1, 1, 1, 1),
    (2, 7, 9, 64, 48, 8),  # several pixel tiles, a partial last one
]


@pytest.mark.parametrize("shape", TOPO_SHAPES)
def test_topological_projection_matches_reference(lib, shape):
    x, kernel, index = _topo_case(*shape)
    expected = custom.topological_projection_reference(x, kernel, index)
    np.testing.assert_allclose(custom.topological_projection(x, kernel, index), expected,
                               rtol=1e-5, atol=1e-5)
    got = tf.function(custom.topological_projection)(x, kernel, index)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_topological_projection_repeated_indices_add_up(lib):
    x, kernel, index = _topo_case(2, 3, 4, 6, 5, 9, seed=1, replace=True)
    expected = np.einsum("nhwko,ko->nhwo", tf.gather(x, index, axis=-1).numpy(), kernel.numpy())
    np.testing.assert_allclose(custom.topological_projection(x, kernel, index), expected,
                               rtol=1e-5, atol=1e-5)


def test_topological_projection_rejects_bad_index(lib):
    x, kernel, index = _topo_case(1, 2, 2, 4, 3, 2)
    bad = tf.tensor_scatter_nd_update(index, [[1, 2]], [4])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"index\[1, 2\] = 4"):
        custom.topological_projection(x, kernel, bad)


SIC_SHAPES = [  # n, h, w, c, k
    (2, 6, 7, 5, 3),
    (1, 9, 4, 17, 5),
    (2, 3, 3, 33, 5),  # kernel wider than half the image
    (1, 5, 5, 1, 3),
    (2, 10, 13, 70, 3),  # channel count not a multiple of the vector width, partial tiles
    (1, 8, 8, 64, 5),
    (3, 4, 6, 19, 1),
]


@pytest.mark.parametrize("shape", SIC_SHAPES)
def test_fused_sic_step_matches_reference(lib, shape):
    args = _sic_case(*shape)
    expected = custom.fused_sic_step_reference(*args)
    np.testing.assert_allclose(custom.fused_sic_step(*args), expected, rtol=1e-5, atol=2e-5)
    got = tf.function(custom.fused_sic_step)(*args)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)


def test_float16_inputs_are_computed_in_float32(lib):
    args = _sic_case(1, 4, 5, 8, 3)
    half = [tf.cast(a, tf.float16) for a in args]
    y = custom.fused_sic_step(*half)
    assert y.dtype == tf.float16
    expected = custom.fused_sic_step_reference(*[tf.cast(a, tf.float32) for a in half])
    np.testing.assert_allclose(tf.cast(y, tf.float32), expected, rtol=1e-2, atol=1e-2)
    x, kernel, index = _topo_case(1, 2, 3, 6, 4, 2)
    assert custom.topological_projection(tf.cast(x, tf.float16), kernel, index).dtype == tf.float16


def test_fused_sic_step_rejects_even_kernel(lib):
    x, dw, proj, scale, bias = _sic_case(1, 4, 4, 3, 3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="odd"):
        custom.fused_sic_step(x, tf.zeros([2, 2, 3]), proj, scale, bias)


# ------------------------------------------------------------------------------------------------
# Gradients (vs tf.GradientTape on the composite reference)
# ------------------------------------------------------------------------------------------------


def _grads(fn, args, upstream, wrt):
    with tf.GradientTape() as tape:
        for i in wrt:
            tape.watch(args[i])
        y = fn(*args)
        loss = tf.reduce_sum(y * upstream)
    return tape.gradient(loss, [args[i] for i in wrt])


@pytest.mark.parametrize("shape", [(2, 4, 5, 11, 7, 3), (1, 3, 3, 16, 16, 16)])
def test_topological_projection_gradients(lib, shape):
    x, kernel, index = _topo_case(*shape, seed=3)
    upstream = tf.constant(_rng(4).standard_normal((*shape[:3], shape[4])).astype("float32"))
    got = _grads(custom.topological_projection, (x, kernel, index), upstream, [0, 1])
    want = _grads(custom.topological_projection_reference, (x, kernel, index), upstream, [0, 1])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_topological_projection_numeric_gradient(lib):
    x, kernel, index = _topo_case(1, 2, 3, 5, 4, 2, seed=5, replace=True)
    x, kernel = tf.cast(x, tf.float64), tf.cast(kernel, tf.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: custom.topological_projection(tf.cast(a, tf.float32), tf.cast(b, tf.float32),
                                                   index), [x, kernel])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", [(2, 5, 6, 7, 3), (1, 4, 4, 12, 5)])
def test_fused_sic_step_gradients(lib, shape):
    args = _sic_case(*shape, seed=6)
    upstream = tf.constant(_rng(7).standard_normal(shape[:4]).astype("float32"))
    got = _grads(custom.fused_sic_step, args, upstream, range(5))
    want = _grads(custom.fused_sic_step_reference, args, upstream, range(5))
    for name, g, w in zip(("x", "dw", "proj", "scale", "bias"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f"d/d{name}")


# ------------------------------------------------------------------------------------------------
# Shape inference
# ------------------------------------------------------------------------------------------------


def test_shape_inference_with_unknown_batch(lib):
    c = 6

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 7, c], tf.float32)])
    def fused(x):
        args = _sic_case(1, 1, 1, c, 3)[1:]
        y = custom.fused_sic_step(x, *args)
        assert y.shape.as_list() == [None, 5, 7, c]
        return y

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, c], tf.float32),
                                  tf.TensorSpec([2, 9], tf.float32),
                                  tf.TensorSpec([2, 9], tf.int32)])
    def topo(x, kernel, index):
        y = custom.topological_projection(x, kernel, index)
        assert y.shape.as_list() == [None, None, None, 9]
        return y

    assert fused.get_concrete_function().structured_outputs.shape.as_list() == [None, 5, 7, c]
    for batch in (1, 3):
        x = tf.ones([batch, 5, 7, c])
        assert fused(x).shape == (batch, 5, 7, c)
        assert topo(x, tf.ones([2, 9]), tf.zeros([2, 9], tf.int32)).shape == (batch, 5, 7, 9)


def test_shape_function_rejects_mismatched_channels(lib):
    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 5], tf.float32)])
    def bad(x):
        return custom.fused_sic_step(x, tf.zeros([3, 3, 5]), tf.zeros([4, 4]), tf.ones([5]),
                                     tf.zeros([5]))

    with pytest.raises(ValueError, match="FusedSICStep|Dimensions must be equal"):
        bad.get_concrete_function()

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 5], tf.float32)])
    def bad_table(x):
        return custom.topological_projection(x, tf.zeros([2, 3]), tf.zeros([3, 3], tf.int32))

    with pytest.raises(ValueError):
        bad_table.get_concrete_function()


# ------------------------------------------------------------------------------------------------
# Build and load errors
# ------------------------------------------------------------------------------------------------


def _fresh_state(monkeypatch):
    """Forget the loaded library for this test (restored afterwards by monkeypatch)."""
    monkeypatch.setattr(custom, "_module", None)
    monkeypatch.setattr(custom, "_error", None)


def test_missing_compiler_is_reported(monkeypatch, tmp_path):
    missing = str(tmp_path / "no-such-g++")
    monkeypatch.setenv(custom.ENV_CXX, missing)
    monkeypatch.setenv(custom.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(custom.CustomOpsError, match="no C\\+\\+ compiler found") as info:
        custom.build_library()
    assert missing in str(info.value)
    _fresh_state(monkeypatch)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler found"):
        custom.load_custom_ops()
    assert custom.available() is False
    assert "no C++ compiler found" in custom.unavailable_reason()


def test_compile_error_is_reported_and_leaves_no_library(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv(custom.ENV_CACHE, str(cache))
    monkeypatch.setenv(custom.ENV_CXXFLAGS, "-DKERAS_EFFCONV_FORCE_BUILD_ERROR")
    monkeypatch.setenv(custom.ENV_CUDA, "0")
    with pytest.raises(custom.CustomOpsError) as info:
        custom.build_library()
    message = str(info.value)
    assert "failed" in message and "build failure forced" in message  # the compiler's own words
    assert not list(cache.glob("*.so")), "a failed build must not leave a library behind"
    assert not list(cache.glob(".build-*")), "temporary build files must be removed"


def test_available_without_build_does_not_compile(monkeypatch, tmp_path):
    monkeypatch.setenv(custom.ENV_CACHE, str(tmp_path / "empty-cache"))
    _fresh_state(monkeypatch)
    assert custom.available(build=False) is False
    assert not (tmp_path / "empty-cache").exists()


def test_unloadable_library_is_reported(tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(custom.CustomOpsError, match="failed to load the op library"):
        custom._load(bogus)  # pylint: disable=protected-access


def test_build_is_cached(lib):
    path = custom.build_library()
    assert path.exists() and path.suffix == ".so"
    assert custom.build_library() == path  # a second call finds it without rebuilding
    assert custom.available() is True and custom.unavailable_reason() is None
    info = custom.build_info()
    assert info["path"] == str(path)
    assert isinstance(info["cuda"], bool) and (info["cuda"] or info["cuda_reason"])


# ------------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------------


def _cuda_or_skip():
    info = custom.build_info()
    if not info.get("cuda"):
        pytest.skip(info.get("cuda_reason") or "CUDA kernels not built")
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("CUDA kernels built but no GPU visible to TensorFlow")


def test_cuda_kernels_match_cpu(lib):
    _cuda_or_skip()
    x, kernel, index = _topo_case(2, 5, 7, 13, 9, 3)
    args = _sic_case(2, 6, 7, 33, 3)
    with tf.device("/CPU:0"):
        topo_cpu = custom.topological_projection(x, kernel, index)
        sic_cpu = custom.fused_sic_step(*args)
    with tf.device("/GPU:0"):
        topo_gpu = custom.topological_projection(x, kernel, index)
        sic_gpu = custom.fused_sic_step(*args)
    np.testing.assert_allclose(topo_gpu, topo_cpu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sic_gpu, sic_cpu, rtol=1e-5, atol=2e-5)


def test_cuda_build_decision_has_a_reason():
    build, reason = custom.cuda_status()
    assert isinstance(build, bool) and reason
    if os.environ.get(custom.ENV_CUDA, "auto") == "auto" and not tf.config.list_physical_devices("GPU"):
        assert not build
        assert any(why in reason for why in ("no GPU", "nvcc", "not a CUDA build", "disabled"))
