"""`keras_effconv.benchmark.profile` / `effconv profile`: op categories, the busy-time split, the
XSpace parsing on a hand-made trace, and tiny real captures (train and inference)."""

import json

import keras
import pytest

from keras_effconv.benchmark import profile
from keras_effconv.cli.main import main


@pytest.mark.parametrize("raw, expected", [
    ("_MklNativeConv2D", "Conv2D"), ("_MklNativeFusedConv2D", "Conv2D"), ("_FusedConv2D", "Conv2D"),
    ("_MklNativePadWithFusedConv2D", "Conv2D"), ("_MklNativePadWithConv2D", "Conv2D"),
    ("_MklNativeDepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropFilter"),
    ("_MklFusedBatchNormV3", "FusedBatchNormV3"), ("_FusedBatchNormEx", "FusedBatchNormV3"),
    ("_MklNativeFusedMatMul", "MatMul"), ("AddV2", "AddV2"), ("Transpose", "Transpose"),
])
def test_normalize_op_type(raw, expected):
    assert profile.normalize_op_type(raw) == expected


DENSE_1X1 = {"conv": "1x1 dense", "batchnorm": False, "transpose": False}
GROUPED_1X1 = {"conv": "1x1 grouped", "batchnorm": False, "transpose": False}
BN = {"conv": None, "batchnorm": True, "transpose": False}
UP = {"conv": None, "batchnorm": False, "transpose": True}


@pytest.mark.parametrize("op_type, name, layer, expected", [
    ("_MklNativeDepthwiseConv2dNative", "m_1/c2_dw_1/depthwise", None, "depthwise fwd"),
    ("_MklNativeDepthwiseConv2dNativeBackpropInput", "gradient_tape/m_1/c2_dw_1/depthwise/D", None, "depthwise bwd input"),
    ("DepthwiseConv2dNativeBackpropFilter", "gradient_tape/m_1/c2_dw_1/depthwise/D", None, "depthwise bwd filter"),
    ("_MklNativeConv2D", "m_1/c2_conv_1/convolution", DENSE_1X1, "conv 1x1 dense fwd"),
    ("Conv2D", "m_1/c2_conv_1/Conv2D", GROUPED_1X1, "conv 1x1 grouped fwd"),
    ("_MklNativeConv2DBackpropInput", "gradient_tape/m_1/c_1/Conv2DBackpropInput", GROUPED_1X1, "conv 1x1 grouped bwd input"),
    ("Conv2DBackpropFilter", "gradient_tape/m_1/c_1/Conv2DBackpropFilter", DENSE_1X1, "conv 1x1 dense bwd filter"),
    ("Conv2D", "m_1/x_1/Conv2D", None, "conv (kernel unknown) fwd"),
    ("FusedBatchNormV3", "m_1/anything_1/FusedBatchNormV3", None, "batchnorm fwd"),
    ("FusedBatchNormGradV3", "gradient_tape/m_1/a_1/FusedBatchNormGradV3", None, "batchnorm bwd"),
    ("Mul", "m_1/c2_bn_1/batchnorm/mul", None, "batchnorm fwd"),  # by the scope name
    ("Mul", "m_1/batch_normalization_3/batchnorm/mul", None, "batchnorm fwd"),
    ("Tile", "gradient_tape/m_1/blk_1/bn1_1/moments/Tile", None, "batchnorm bwd"),
    ("Mul", "m_1/c2_bn_1/batchnorm/mul", DENSE_1X1, "other"),  # a resolved non-BN layer wins over the name
    ("Sub", "m_1/c2_1/moments/sub", BN, "batchnorm fwd"),
    ("Mul", "m_1/rescaling_1/mul", None, "other"),
    ("AddV2", "m_1/c2_add_1/add", None, "add/relu fwd"),
    ("Relu", "m_1/c2_relu_1/Relu", None, "add/relu fwd"),
    ("ReluGrad", "gradient_tape/m_1/c2_relu_1/ReluGrad", None, "add/relu bwd"),
    ("_MklNativeDepthwiseConv2dNative", "m_1/blk_1/up_1/depthwise", UP, "transposed conv fwd"),
    ("Pad", "gradient_tape/m_1/blk_1/up_1/Pad", UP, "transposed conv bwd"),
    ("Conv2DBackpropInput", "m_1/blk_1/conv2d_transpose", None, "transposed conv fwd"),
    ("Transpose", "m_1/c_1/transpose", None, "transpose"),
    ("AssignSubVariableOp", "sgd_1/AssignSubVariableOp_3", None, "optimizer"),
    ("ResourceApplyGradientDescent", "x/y", None, "optimizer"),
    ("SparseSoftmaxCrossEntropyWithLogits", "compile_loss/scce/S", None, "loss & metrics"),
    ("_MklMatMul", "gradient_tape/m_1/predictions_1/MatMul/MatMul", None, "matmul/einsum"),
    ("ReadVariableOp", "m_1/c_1/ReadVariableOp", None, "other"),
])
def test_op_category(op_type, name, layer, expected):
    assert profile.op_category(op_type, name, layer, optimizer="sgd") == expected


def test_describe_layer_kernel_kinds():
    def built(layer, channels):
        layer.build((None, 8, 8, channels))
        return profile.describe_layer(layer)

    assert built(keras.layers.Conv2D(8, 1), 4)["conv"] == "1x1 dense"
    assert built(keras.layers.Conv2D(8, 1, groups=2), 4)["conv"] == "1x1 grouped"
    assert built(keras.layers.Conv2D(8, 3), 4)["conv"] == "kxk dense"
    bn = built(keras.layers.BatchNormalization(), 4)
    assert bn["batchnorm"] and bn["conv"] is None


def test_layer_resolver_finds_nested_layers():
    from keras_effconv.layers import SpatialBottleneck
    from keras_effconv.layers import TopologicalConv2D

    inputs = keras.Input((8, 8, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = TopologicalConv2D(8, layout=(2, 4), neighborhood=(1, 4), name="topo")(x)
    outputs = SpatialBottleneck(8, name="blk")(x)
    model = keras.Model(inputs, outputs, name="net")
    resolve = profile.LayerResolver(model)
    assert resolve("gradient_tape/net_1/blk_1/up_1/depthwise")["transpose"]
    assert resolve("net_1/topo_1/Conv2D")["conv"] == "1x1 grouped"
    assert resolve("net_1/blk_1/proj_1/Conv2D")["conv"] == "1x1 dense"
    assert resolve("net/blk/bn/batchnorm/mul")["batchnorm"]
    assert resolve("net_1/stem_1/convolution")["conv"] == "kxk dense"
    assert resolve("compile_loss/x/Sum") is None and resolve("net_1/no_such_layer/Add") is None


def test_split_busy_time_shares_overlap_and_skips_parents():
    # line a: 0-10, line b: 5-15 -> 5 alone, 5 shared, 5 alone; line c: parent 20-30 with child 22-24
    credit = profile.split_busy_time([("a", 0, 10), ("b", 5, 15), ("c", 20, 30), ("c", 22, 24)])
    assert credit == [7.5, 7.5, 8.0, 2.0]
    assert sum(credit) == 15 + 10  # = the union of the intervals


def _xspace(steps, ops):
    """A host-plane XSpace: steps [(start_ps, end_ps)] on a python line, ops [(line, start, end, name, type)]."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    lines = {}

    def event(line_id, name, display, start, end):
        if line_id not in lines:
            lines[line_id] = plane.lines.add(id=line_id, timestamp_ns=1000)
        meta_id = len(plane.event_metadata) + 1
        plane.event_metadata[meta_id].id = meta_id
        plane.event_metadata[meta_id].name = name
        plane.event_metadata[meta_id].display_name = display
        lines[line_id].events.add(metadata_id=meta_id, offset_ps=start, duration_ps=end - start)

    for start, end in steps:
        event(0, profile.STEP_NAME, "", start, end)
    for line, start, end, name, kind in ops:
        event(line, f"{name}:{kind}", kind, start, end)
    event(1, "ThreadpoolListener::Record", "", 0, 10)  # not a TF op
    return space


def test_aggregate_on_a_synthetic_trace():
    ms = 10**9  # ps per ms
    space = _xspace(
        [(0, 10 * ms), (20 * ms, 30 * ms)],
        [(1, 1 * ms, 5 * ms, "m_1/c_dw_1/depthwise", "_MklNativeDepthwiseConv2dNative"),
         (2, 3 * ms, 7 * ms, "m_1/c_bn_1/mul", "Mul"),  # overlaps the depthwise for 2 ms
         (1, 21 * ms, 25 * ms, "gradient_tape/m_1/c_dw_1/depthwise/D", "DepthwiseConv2dNativeBackpropInput"),
         (1, 40 * ms, 45 * ms, "m_1/outside_1/Relu", "Relu"),  # outside every step: ignored
         (2, 22 * ms, 28 * ms, "m_1/x_1/StatefulPartitionedCall", "StatefulPartitionedCall")])
    result = profile.aggregate(space)
    rows = {r["category"]: r for r in result["categories"]}
    assert result["steps"] == 2 and result["step_ms"] == [10.0, 10.0] and result["busy_ms"] == 5.0
    assert rows["depthwise fwd"]["ms"] == 1.5 and rows["depthwise fwd"]["op_ms"] == 2.0  # (4 - 1) / 2 steps
    assert rows["batchnorm fwd"]["ms"] == 1.5 and rows["depthwise bwd input"]["ms"] == 2.0
    assert rows[profile.OVERHEAD]["ms"] == 5.0 and "add/relu fwd" not in rows
    assert result["categories"][-1]["category"] == profile.OVERHEAD
    assert sum(r["percent"] for r in result["categories"]) == pytest.approx(100.0)
    assert result["overhead_ms"] == pytest.approx({"before_first_op": 1.0, "after_last_op": 4.0, "between_ops": 0.0})
    assert [o["op_type"] for o in result["top_ops"]][0] == "DepthwiseConv2dNativeBackpropInput"
    with pytest.raises(ValueError, match="no 'effconv_profile_step' step events"):
        profile.aggregate(_xspace([], []))


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "eval"}, "mode='eval'"), ({"batch": 0}, "batch=0"), ({"batch": 2.5}, "batch=2.5"),
    ({"steps": 0}, "steps=0"), ({"image_size": -1}, "image_size=-1"), ({"warmup": 0}, "warmup=0"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        profile.profile_model("DemoCNN", **kwargs)


def _check_shares(result):
    rows = {r["category"]: r for r in result["categories"]}
    assert all(0.0 <= r["percent"] <= 100.0 for r in result["categories"])
    assert sum(r["percent"] for r in result["categories"]) == pytest.approx(100.0, abs=0.01)
    assert result["busy_ms"] <= result["step_ms_mean"] + 1e-6
    return rows


def test_train_profile_has_backward_and_optimizer_ops():
    result = profile.profile_model("DemoCNN", mode="train", batch=2, image_size=16, steps=1, warmup=1)
    rows = _check_shares(result)
    assert rows["conv kxk dense fwd"]["ms"] > 0
    for backward in ("conv kxk dense bwd input", "conv kxk dense bwd filter", "batchnorm bwd", "add/relu bwd"):
        assert rows[backward]["ops"] > 0, backward
    assert rows["optimizer"]["ops"] > 0 and rows["loss & metrics"]["ops"] > 0


@pytest.mark.slow
def test_cli_train_profile_of_effresnet20(tmp_path, capsys):
    out = tmp_path / "p.json"
    code = main(["profile", "--model", "EffResNet20", "--mode", "train", "--batch", "2", "--image-size", "16",
                 "--steps", "1", "--warmup", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "| framework overhead |" in printed and "Top op types" in printed
    (result,) = json.loads(out.read_text())["results"]
    rows = _check_shares(result)
    assert rows["conv 1x1 dense fwd"]["ms"] > 0 and rows["depthwise fwd"]["ms"] > 0
    for backward in ("depthwise bwd input", "depthwise bwd filter", "conv 1x1 dense bwd filter", "batchnorm bwd"):
        assert rows[backward]["ops"] > 0, backward
    assert rows["optimizer"]["ops"] > 0 and "conv (kernel unknown) fwd" not in rows


def test_infer_profile_has_no_backward_ops():
    result = profile.profile_model("DemoCNN", mode="infer", batch=2, image_size=16, steps=2, warmup=1)
    rows = _check_shares(result)
    # On the TF runtime grappler folds FusedBatchNormalization's inference op into the conv before it.
    convs = [name for name in rows if name.startswith("conv") and name.endswith("fwd") and rows[name]["ms"] > 0]
    assert convs and ("conv + folded BN fwd" in rows or rows["batchnorm fwd"]["ops"] > 0)
    assert not [name for name in rows if "bwd" in name or name == "optimizer"]
    assert "DemoCNN infer b2@16" in profile.format_profile(result, result)


def test_a_conv_with_a_folded_batchnorm_is_named_as_such():
    assert profile.op_category("_MklNativeFusedConv2D", "model/bn/FusedBatchNormV3", {"batchnorm": True}) == \
        "conv + folded BN fwd"
    assert profile.op_category("_FusedConv2D", "model/conv/Conv2D", {"conv": "1x1 dense"}) == "conv 1x1 dense fwd"
