// Op registrations (interfaces and shape functions) of the keras_effconv custom op library.
// The kernels are in effconv_topological.cc / effconv_fused_sic.cc (CPU) and effconv_kernels.cu.cc (CUDA).
#include "effconv_kernels.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace keras_effconv {
namespace {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

Status TopologicalProjectionShape(InferenceContext* c) {
  ShapeHandle x, kernel, index;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &kernel));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &index));
  ShapeHandle table;
  TF_RETURN_IF_ERROR(c->Merge(kernel, index, &table));  // kernel and index are both [W_win, Cout].
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->ReplaceDim(x, 3, c->Dim(table, 1), &out));
  c->set_output(0, out);
  return Status();
}

Status FusedSICStepShape(InferenceContext* c) {
  ShapeHandle x, dw, proj, scale, bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &dw));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &proj));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &scale));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &bias));
  DimensionHandle k, channels;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(dw, 0), c->Dim(dw, 1), &k));
  if (c->ValueKnown(k) && c->Value(k) % 2 == 0) {
    return ::tensorflow::errors::InvalidArgument(
        "FusedSICStep: the depthwise kernel size must be odd; received dw shape ",
        c->DebugString(dw));
  }
  channels = c->Dim(x, 3);
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(dw, 2), &channels));
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(proj, 0), &channels));
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(proj, 1), &channels));
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(scale, 0), &channels));
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(bias, 0), &channels));
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->ReplaceDim(x, 3, channels, &out));
  c->set_output(0, out);
  return Status();
}

}  // namespace
}  // namespace keras_effconv

REGISTER_OP("TopologicalProjection")
    .Input("x: float")
    .Input("kernel: float")
    .Input("index: int32")
    .Output("y: float")
    .SetShapeFn(keras_effconv::TopologicalProjectionShape)
    .Doc(R"doc(
Sparse 1x1 convolution: y[n,h,w,o] = sum_k kernel[k,o] * x[n,h,w,index[k,o]].

x: [N, H, W, Cin] float32, NHWC.
kernel: [W_win, Cout] weights of the W_win connections kept per output channel.
index: [W_win, Cout] int32 input channel of each connection, in [0, Cin).
y: [N, H, W, Cout].
)doc");

REGISTER_OP("FusedSICStep")
    .Input("x: float")
    .Input("dw: float")
    .Input("proj: float")
    .Input("scale: float")
    .Input("bias: float")
    .Output("y: float")
    .SetShapeFn(keras_effconv::FusedSICStepShape)
    .Doc(R"doc(
One fused single intra-channel convolution step (inference form, BatchNorm folded):
y = relu(x + (depthwise_conv_kxk(x, dw, stride 1, 'same' zero padding) @ proj) * scale + bias).

x: [N, H, W, C] float32, NHWC.
dw: [k, k, C] depthwise kernel, k odd.
proj: [C, C] dense channel projection.
scale: [C] per-output-channel scale.
bias: [C] per-output-channel bias.
y: [N, H, W, C].
)doc");
