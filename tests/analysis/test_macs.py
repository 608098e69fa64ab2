"""MAC / parameter counting: hand-computed formulas, the `compute_macs` protocol, nesting, and a
cross-check against the TF profiler's float-op count on frozen graphs."""

import collections
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler import option_builder

from keras_effconv import layers as E
from keras_effconv.analysis import Profile
from keras_effconv.analysis import count_macs
from keras_effconv.analysis import profile

L = keras.layers

# (factory, input shape without batch, hand-computed MACs for one example)
KERAS_CASES = {
    # out 6x6x4; 36 px * 4 out * 3x3 * 3 in
    "conv2d_valid": (lambda: L.Conv2D(4, 3), (8, 8, 3), 36 * 4 * 9 * 3),
    # out 4x4x4
    "conv2d_same_stride2": (lambda: L.Conv2D(4, 3, strides=2, padding="same"), (8, 8, 3), 16 * 4 * 9 * 3),
    # effective kernel 5 -> out 4x4x5
    "conv2d_dilated": (lambda: L.Conv2D(5, 3, dilation_rate=2), (8, 8, 3), 16 * 5 * 9 * 3),
    # 2 groups of 2 input channels
    "conv2d_grouped": (lambda: L.Conv2D(6, 3, groups=2, padding="same"), (8, 8, 4), 64 * 6 * 9 * 2),
    "conv2d_channels_first": (
        lambda: L.Conv2D(4, 3, data_format="channels_first"),
        (3, 8, 8),
        36 * 4 * 9 * 3,
    ),
    # out length floor((10 - 3) / 2) + 1 = 4
    "conv1d_stride2": (lambda: L.Conv1D(4, 3, strides=2), (10, 3), 4 * 4 * 3 * 3),
    "conv3d": (lambda: L.Conv3D(3, 2), (4, 4, 4, 2), 27 * 3 * 8 * 2),
    # out 4x4x6
    "depthwise2d": (
        lambda: L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same"),
        (8, 8, 3),
        16 * 6 * 9,
    ),
    "depthwise1d": (lambda: L.DepthwiseConv1D(3), (10, 4), 8 * 4 * 3),
    # depthwise 64 px * 6 * 9 + pointwise 64 px * 6 * 5
    "separable2d": (
        lambda: L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2),
        (8, 8, 3),
        64 * 6 * 9 + 64 * 6 * 5,
    ),
    "separable1d": (lambda: L.SeparableConv1D(6, 3), (10, 4), 8 * 4 * 3 + 8 * 4 * 6),
    # input pixels * k*k * Cin * Cout, whatever the padding
    "conv2d_transpose_same": (
        lambda: L.Conv2DTranspose(5, 3, strides=2, padding="same"),
        (4, 4, 3),
        16 * 9 * 3 * 5,
    ),
    "conv2d_transpose_valid": (lambda: L.Conv2DTranspose(5, 3, strides=2), (4, 4, 3), 16 * 9 * 3 * 5),
    "conv3d_transpose": (lambda: L.Conv3DTranspose(4, 2, strides=2), (2, 2, 2, 3), 8 * 8 * 3 * 4),
    "dense": (lambda: L.Dense(5), (7,), 7 * 5),
    "dense_3d_input": (lambda: L.Dense(5), (4, 6, 7), 4 * 6 * 7 * 5),
    "einsum_dense": (lambda: L.EinsumDense("abc,cd->abd", output_shape=(None, 6)), (4, 5), 4 * 5 * 6),
    "time_distributed_dense": (lambda: L.TimeDistributed(L.Dense(3)), (5, 7), 5 * 7 * 3),
    "max_pool": (lambda: L.MaxPooling2D(), (8, 8, 3), 0),
    "batch_norm": (lambda: L.BatchNormalization(), (8, 8, 3), 0),
    "relu": (lambda: L.ReLU(), (8, 8, 3), 0),
}


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_keras_layer_formulas(case):
    factory, shape, expected = KERAS_CASES[case]
    # Unbuilt layer: traced at batch 1 from `input_shape`.
    assert count_macs(factory(), shape) == expected
    # Built inside a functional model: shapes come from the graph nodes.
    inputs = keras.Input(shape)
    model = keras.Model(inputs, factory()(inputs))
    prof = profile(model)
    assert prof.total_macs == expected
    assert prof.total_params == model.count_params()
    assert not prof.unknown_layers


def test_merge_layers():
    a, b = keras.Input((3, 4)), keras.Input((5, 4))
    dot = L.Dot(axes=2)([a, b])  # (3, 5), 4 summed
    model = keras.Model([a, b], L.Add()([dot, dot]))
    assert count_macs(model) == 3 * 5 * 4
    assert count_macs(model, [(3, 4), (5, 4)]) == 3 * 5 * 4


def test_multi_head_attention_counts_projections_and_attention():
    q, v = keras.Input((5, 8)), keras.Input((7, 8))
    model = keras.Model([q, v], L.MultiHeadAttention(num_heads=2, key_dim=4)(q, v))
    # q/k/v/output projections (8 -> 2 heads x 4 and back) + scores and context einsums
    expected = 5 * 8 * 8 + 2 * (7 * 8 * 8) + 5 * 8 * 8 + 2 * (2 * 5 * 7 * 4)
    assert count_macs(model) == expected
    assert count_macs(L.MultiHeadAttention(num_heads=2, key_dim=4), [(5, 8), (7, 8)]) == expected


def test_functional_keras_ops_and_lambda():
    x = keras.Input((6, 8))
    y = keras.ops.add(keras.ops.matmul(x, keras.ops.transpose(x, (0, 2, 1))), 1.0)  # 6x6, 8 summed
    model = keras.Model(x, L.Lambda(lambda t: t * 2, name="double")(y))
    prof = profile(model)
    assert prof.total_macs == 6 * 6 * 8
    assert prof.unknown_layers == ["double"]


class Toy(keras.layers.Layer):
    """Declares its own MACs; its conv sublayer must not be counted on top."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, padding="same")
        self.seen = []

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        return self.conv(x)

    def compute_macs(self, input_shape):
        self.seen.append(input_shape)
        return 1234


class Block(keras.layers.Layer):
    """A container without `compute_macs`: counted through its sublayers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, padding="same")
        self.bn = L.BatchNormalization()
        self.dense = L.Dense(2)

    def call(self, x):
        return self.dense(self.bn(self.conv(x)))


class Scaled(keras.layers.Layer):
    """Unknown type with own weights and no sublayers: 0 MACs, flagged."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


CONV_8x8x3_TO_4 = 64 * 4 * 9 * 3  # Conv2D(4, 3, same) on 8x8x3


def test_compute_macs_protocol_is_used_and_sublayers_not_double_counted():
    toy = Toy()
    assert count_macs(toy, (8, 8, 3)) == 1234
    assert toy.seen[-1] == (None, 8, 8, 3)  # batch dim passed as None
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Toy()(L.Conv2D(3, 1)(inputs)))
    prof = profile(model)
    assert prof.total_macs == 1234 + 64 * 3 * 3
    assert [r.class_name for r in prof.rows] == ["Conv2D", "Toy"]
    assert prof.rows[1].source == "compute_macs"
    assert prof.total_params == model.count_params()


def test_container_layer_is_expanded_into_sublayers():
    block = Block()
    prof = profile(block, (8, 8, 3))
    assert prof.total_macs == CONV_8x8x3_TO_4 + 64 * 4 * 2
    assert [r.class_name for r in prof.rows] == ["Conv2D", "BatchNormalization", "Dense"]
    assert [r.source for r in prof.rows] == ["keras", "zero", "keras"]
    assert prof.total_params == block.count_params()


def test_unknown_layer_is_flagged_and_own_weights_reported():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Scaled(name="scaled")(L.Conv2D(4, 3, padding="same")(inputs)))
    prof = profile(model)
    assert prof.total_macs == CONV_8x8x3_TO_4
    assert prof.unknown_layers == ["scaled"]
    assert "?" in prof.table()
    assert prof.total_params == model.count_params()


class OwnWeights(keras.layers.Layer):
    """A container that also uses a weight of its own: that part is reported, flagged."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(3)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.gain = self.add_weight(shape=(3,), initializer="ones")

    def call(self, x):
        return self.dense(x) * self.gain


def test_container_own_weights_get_a_flagged_row():
    layer = OwnWeights(name="own")
    prof = profile(layer, (4,))
    assert prof.total_macs == 4 * 3
    assert prof.unknown_layers == ["own/(own weights)"]
    assert [r.params for r in prof.rows] == [15, 3]
    assert prof.total_params == layer.count_params()


def test_nested_models_and_shared_layers():
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.ReLU()], name="inner")
    shared = L.Dense(5, name="shared")
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)  # 8x8x4
    x = L.Conv2D(6, 3, strides=2, padding="same")(x)  # 4x4x6
    x = L.GlobalAveragePooling2D()(x)
    x = shared(L.Dense(5)(x))
    x = shared(x)  # called twice: MACs twice, params once
    outer = keras.Model(inputs, x)
    expected = CONV_8x8x3_TO_4 + 16 * 6 * 9 * 4 + 6 * 5 + 2 * 5 * 5
    prof = profile(outer)
    assert prof.total_macs == expected
    assert prof.total_params == outer.count_params()
    assert any(r.name.startswith("inner/") for r in prof.rows)
    # A subclassed model around the functional one: traced from `input_shape`, same count.
    wrapper = keras.Sequential([outer, L.Dense(2)])
    assert count_macs(wrapper, (8, 8, 3)) == expected + 5 * 2
    # Built by calling on data: the recorded build shape is enough.
    block = Block()
    block(np.zeros((2, 8, 8, 3), "float32"))
    assert count_macs(block) == CONV_8x8x3_TO_4 + 64 * 4 * 2


def test_missing_input_shape_raises():
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(L.Conv2D(4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(keras.Sequential([L.Conv2D(4, 3)]))
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, padding="same")(inputs))
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(model)
    assert count_macs(model, (8, 8, 3)) == CONV_8x8x3_TO_4
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(L.Conv2D(4, 3), "8x8x3")


def test_profile_table_and_dict():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, L.Dense(2)(L.Conv2D(4, 3, padding="same")(inputs)))
    prof = profile(model)
    assert isinstance(prof, Profile)
    text = str(prof)
    assert text == prof.table()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    row = next(line for line in lines if line.startswith("conv2d"))
    assert row.index(f"{CONV_8x8x3_TO_4:,}") + len(f"{CONV_8x8x3_TO_4:,}") == header.index("MACs") + len(
        "MACs"
    )  # right-aligned numbers line up
    assert "Total MACs: 7.42 K (7,424)" in text
    data = json.loads(json.dumps(prof.to_dict()))
    assert data["total_macs"] == CONV_8x8x3_TO_4 + 64 * 4 * 2 == prof.total_macs
    assert data["total_params"] == model.count_params()
    assert data["rows"][0]["output_shape"] == [None, 8, 8, 4]


# ---- cross-check with the TF profiler ----------------------------------------------------------

MAC_OP_TYPES = {"Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput"}


def profiler_flops(model, shape):
    """TF profiler float ops of the frozen batch-1 inference graph: (total, {op type: flops})."""
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((1,) + shape)))
    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    info = model_analyzer.profile(graph=frozen.graph, cmd="scope", options=opts.with_empty_output().build())
    by_type = collections.Counter()

    def walk(node):
        if node.float_ops:
            by_type[frozen.graph.get_operation_by_name(node.name).type] += node.float_ops
        for child in node.children:
            walk(child)

    walk(info)
    return info.total_float_ops, by_type


@pytest.mark.slow
def test_resnet50_224_matches_tf_profiler():
    """Full ResNet50 at 224x224 (~12 s on an AVX2 EPYC): within 1% of profiler flops / 2."""
    model = keras.applications.ResNet50(weights=None)
    macs = count_macs(model)
    total, by_type = profiler_flops(model, (224, 224, 3))
    assert abs(macs / (total / 2) - 1) < 0.01, (macs, total)
    assert macs == sum(v for k, v in by_type.items() if k in MAC_OP_TYPES) // 2
    assert model.count_params() == profile(model).total_params
    assert "Total MACs: 3.86 G" in profile(model).table()


def small_2d_net():
    inputs = keras.Input((32, 32, 3))
    y = L.Conv2D(16, 3, strides=2, padding="same")(inputs)
    y = L.ReLU()(L.BatchNormalization()(y))
    y = L.Conv2D(16, 3, dilation_rate=2)(y)
    y = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")(y)
    y = L.SeparableConv2D(24, 3, padding="same")(y)
    y = L.Conv2DTranspose(8, 3, strides=2, padding="same")(y)
    y = L.Dense(12)(y)
    y = L.Dense(10)(L.GlobalAveragePooling2D()(y))
    return keras.Model(inputs, y), (32, 32, 3)


def small_1d_3d_net():
    inputs = keras.Input((6, 6, 6, 2))
    y = L.Conv3D(4, 3, padding="same")(inputs)
    y = L.Reshape((27, 4))(L.Conv3D(4, 2, strides=2, padding="same")(y))
    y = L.Conv1D(8, 3, strides=2)(y)
    y = L.DepthwiseConv1D(3, depth_multiplier=2, padding="same")(y)
    y = L.SeparableConv1D(6, 3)(y)
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(y))), (6, 6, 6, 2)


def mobilenet_v2_96():
    return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)), (96, 96, 3)


@pytest.mark.parametrize("make", [small_2d_net, small_1d_3d_net, mobilenet_v2_96])
def test_small_nets_match_tf_profiler(make):
    """Cheap profiler comparison over conv/depthwise/separable/transposed/dense layers.

    Conv/MatMul flops must be exactly 2 * MACs. The total also holds biases, BN, pooling and
    element-wise adds, which weigh more on small/thin nets: measured profiler/2 above the count by
    1.9% (2-D net), 1.3% (1-D/3-D net), 2.3% (MobileNetV2 96x96), so the tolerance is 3%.
    """
    model, shape = make()
    macs = count_macs(model)
    total, by_type = profiler_flops(model, shape)
    assert sum(v for k, v in by_type.items() if k in MAC_OP_TYPES) == 2 * macs, by_type
    assert abs(macs / (total / 2) - 1) < 0.03, (macs, total)
    assert count_macs(model, shape) == macs  # traced path agrees with the graph walk


@pytest.mark.parametrize("make", [
    lambda: E.IntraChannelConv2D(3, strides=2),
    lambda: E.TopologicalConv2D(16, 3, layout=(4, 4), neighborhood=(1, 4)),
    lambda: E.FactorizedConv2D(8, 3, 4, "cp", "factorized", strides=2),
    lambda: E.FactorizedConv2D(8, 3, 4, "cp", "mobilenet"),
    lambda: E.FactorizedConv2D(8, 3, (4, 5), "tucker", padding="valid"),
    lambda: E.DecoupledConv2D(8, 3, intermediate_channels=16),
    lambda: E.StructuredConv2D(8, 3, (4, 2)),
    lambda: E.SIConv2D(16, 3, topology={"blocks": 4, "band": 1}),
], ids=["intra", "topological-blockdiag", "cp", "cp-mobilenet", "tucker-valid", "decoupled", "structured", "sic"])
def test_package_layer_macs_match_tf_profiler(make):
    """The oracle for `compute_macs`: the profiler's conv/matmul flops of the executed ("tf") graph / 2."""
    shape = (12, 12, 16)
    layer = make()
    model = keras.Model(inputs := keras.Input(shape), layer(inputs))
    _, by_type = profiler_flops(model, shape)
    assert sum(v for k, v in by_type.items() if k in MAC_OP_TYPES) == 2 * layer.compute_macs((None, *shape)), by_type


def test_cifar_pair_matches_tf_profiler_at_the_issue_budget():
    """EffResNet20 / ResNet20 (32x32, with their preprocessing layers): count_macs equals the profiler's
    conv/matmul flops / 2 exactly, and the Eff model has >= 4x fewer MACs."""
    from keras_effconv import applications

    macs = {}
    for name in ("EffResNet20", "ResNet20"):
        model = applications.get_model(name, input_shape=(32, 32, 3), classes=10)
        _, by_type = profiler_flops(model, (32, 32, 3))
        macs[name] = count_macs(model)
        assert sum(v for k, v in by_type.items() if k in MAC_OP_TYPES) == 2 * macs[name], (name, by_type)
    assert macs["ResNet20"] / macs["EffResNet20"] >= 4.0, macs
