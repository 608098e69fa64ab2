// Shared declarations of the keras_effconv custom op library.
//
// The CPU kernels live in effconv_topological.cc and effconv_fused_sic.cc (shared blocks in
// effconv_cpu.h), the op registrations (with their shape functions) in
// effconv_ops.cc and the optional CUDA kernels in effconv_kernels.cu.cc (compiled by nvcc only when
// the build finds nvcc AND a CUDA build of TensorFlow; everything CUDA is guarded by GOOGLE_CUDA).
#ifndef KERAS_EFFCONV_OPS_CC_EFFCONV_KERNELS_H_
#define KERAS_EFFCONV_OPS_CC_EFFCONV_KERNELS_H_

#include <cstdint>

#ifdef KERAS_EFFCONV_FORCE_BUILD_ERROR
// Used by the tests to check how a compile error is reported (KERAS_EFFCONV_CXXFLAGS). #error alone
// lets g++ go on compiling the whole file; the missing include is fatal and stops it at once.
#error "keras_effconv: build failure forced by -DKERAS_EFFCONV_FORCE_BUILD_ERROR"
#include "keras_effconv_forced_build_error_stop.h"
#endif

namespace keras_effconv {

// y[p, o] = sum_k kernel[k, o] * x[p, index[k, o]] over `pixels` rows of x[pixels, cin].
struct TopoProjShape {
  int64_t pixels;
  int64_t cin;
  int64_t cout;
  int64_t window;  // W_win: connections kept per output channel.
};

// y = relu(x + depthwise_same(x, dw) @ proj * scale + bias) on x[n, h, w, c], dw[k, k, c].
struct FusedSICShape {
  int64_t n;
  int64_t h;
  int64_t w;
  int64_t c;
  int64_t k;
};

#if GOOGLE_CUDA
// Launchers implemented in effconv_kernels.cu.cc; `stream` is a cudaStream_t. `z` is a scratch
// buffer of n*h*w*c floats (the depthwise result). Return false if a launch failed.
bool LaunchTopologicalProjectionGpu(const void* stream, const TopoProjShape& s, const float* x,
                                    const float* kernel, const int32_t* index, float* y);
bool LaunchFusedSICStepGpu(const void* stream, const FusedSICShape& s, const float* x,
                           const float* dw, const float* proj, const float* scale,
                           const float* bias, float* z, float* y);
#endif  // GOOGLE_CUDA

}  // namespace keras_effconv

#endif  // KERAS_EFFCONV_OPS_CC_EFFCONV_KERNELS_H_
