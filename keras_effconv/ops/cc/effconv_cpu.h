// Internal building blocks of the CPU kernels (effconv_topological.cc, effconv_fused_sic.cc).
//
// Both CPU kernels split their work into fixed blocks run on the TF CPU device's worker threads
// (tensorflow_cpu_worker_threads()->workers->ParallelFor) and keep channels innermost. When the
// library is built for an AVX-512 CPU (-march=native) they use the AVX-512 paths below; otherwise
// portable loops that g++ -O3 vectorises (and Eigen's GEMM for the projection).
//
#ifndef KERAS_EFFCONV_OPS_CC_EFFCONV_CPU_H_
#define KERAS_EFFCONV_OPS_CC_EFFCONV_CPU_H_

#include "effconv_kernels.h"

#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "Eigen/Core"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"
#if GOOGLE_CUDA
#include "unsupported/Eigen/CXX11/Tensor"
#endif

namespace keras_effconv {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;

// 64-byte aligned scratch (a std::vector is only 16-byte aligned: split cache lines in the loads).
using AlignedBuffer = std::vector<float, Eigen::aligned_allocator<float>>;

// Per-thread scratch reused across calls (no allocation or zeroing per block). `slot` tells apart
// the buffers one block needs at the same time. Contents are unspecified on return.
inline float* Scratch(int slot, int64_t n) {
  thread_local AlignedBuffer buffers[2];
  AlignedBuffer& b = buffers[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(n);
  return b.data();
}

// fn(begin, end) over [0, total) in fixed blocks of `block` units on the TF CPU device's worker
// threads (the calling thread takes part). Small fixed blocks keep the two cores balanced even when
// the machine is shared and one worker is descheduled for a while.
inline void ParallelForBlocks(OpKernelContext* ctx, int64_t total, int64_t block,
                       const std::function<void(int64_t, int64_t)>& fn) {
  block = std::max<int64_t>(1, block);
  const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  if (total <= block || workers == nullptr || workers->workers == nullptr ||
      workers->num_threads <= 1) {
    fn(0, total);
    return;
  }
  workers->workers->ParallelFor(
      total, ::tensorflow::thread::ThreadPool::SchedulingParams::Fixed(block), fn);
}

// ------------------------------------------------------------------------------------------------
// Input validation shared by the CPU and GPU kernels.
// ------------------------------------------------------------------------------------------------

inline bool ValidateTopoProj(OpKernelContext* ctx, TopoProjShape* s) {
  const Tensor& x = ctx->input(0);
  const Tensor& kernel = ctx->input(1);
  const Tensor& index = ctx->input(2);
  if (x.dims() != 4) {
    ctx->CtxFailure(errors::InvalidArgument("TopologicalProjection: x must be rank 4 (NHWC); got ",
                                            x.shape().DebugString()));
    return false;
  }
  if (kernel.dims() != 2 || index.dims() != 2 || kernel.shape() != index.shape()) {
    ctx->CtxFailure(errors::InvalidArgument(
        "TopologicalProjection: kernel and index must both be [W_win, Cout]; got kernel ",
        kernel.shape().DebugString(), " and index ", index.shape().DebugString()));
    return false;
  }
  s->cin = x.dim_size(3);
  s->pixels = x.dim_size(0) * x.dim_size(1) * x.dim_size(2);
  s->window = kernel.dim_size(0);
  s->cout = kernel.dim_size(1);
  return true;
}

inline bool ValidateFusedSIC(OpKernelContext* ctx, FusedSICShape* s) {
  const Tensor& x = ctx->input(0);
  const Tensor& dw = ctx->input(1);
  const Tensor& proj = ctx->input(2);
  const Tensor& scale = ctx->input(3);
  const Tensor& bias = ctx->input(4);
  if (x.dims() != 4) {
    ctx->CtxFailure(errors::InvalidArgument("FusedSICStep: x must be rank 4 (NHWC); got ",
                                            x.shape().DebugString()));
    return false;
  }
  const int64_t c = x.dim_size(3);
  if (dw.dims() != 3 || dw.dim_size(0) != dw.dim_size(1) || dw.dim_size(0) % 2 == 0 ||
      dw.dim_size(2) != c) {
    ctx->CtxFailure(errors::InvalidArgument(
        "FusedSICStep: dw must be [k, k, C] with k odd and C = ", c, "; got ", dw.shape().DebugString()));
    return false;
  }
  if (proj.dims() != 2 || proj.dim_size(0) != c || proj.dim_size(1) != c) {
    ctx->CtxFailure(errors::InvalidArgument("FusedSICStep: proj must be [C, C] with C = ", c,
                                            "; got ", proj.shape().DebugString()));
    return false;
  }
  if (scale.dims() != 1 || scale.dim_size(0) != c || bias.dims() != 1 || bias.dim_size(0) != c) {
    ctx->CtxFailure(errors::InvalidArgument("FusedSICStep: scale and bias must be [C] with C = ", c,
                                            "; got ", scale.shape().DebugString(), " and ",
                                            bias.shape().DebugString()));
    return false;
  }
  s->n = x.dim_size(0);
  s->h = x.dim_size(1);
  s->w = x.dim_size(2);
  s->c = c;
  s->k = dw.dim_size(0);
  return true;
}


// ------------------------------------------------------------------------------------------------
// AVX-512 building blocks (used when the library is built with -march=native on an AVX-512 CPU;
// otherwise the portable loops below are used and the compiler vectorises what it can).
// ------------------------------------------------------------------------------------------------
#if defined(__AVX512F__)
#define KERAS_EFFCONV_AVX512 1

inline __mmask16 TailMask(int64_t n) {
  if (n >= 16) return static_cast<__mmask16>(0xFFFF);
  if (n <= 0) return static_cast<__mmask16>(0);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// dst[j * ldd + i] = src[i * lds + j] for i, j < 16.
inline void Transpose16x16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int half = 0; half < 2; ++half) {
    const int b = 8 * half;
    for (int i = 0; i < 4; ++i) {
      t[b + i] = _mm512_shuffle_f32x4(r[b + i], r[b + 4 + i], 0x88);
      t[b + 4 + i] = _mm512_shuffle_f32x4(r[b + i], r[b + 4 + i], 0xDD);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

// FusedSICStep projection micro-kernel: MR pixels x 32 output channels, K = C, with the epilogue
// y = max(0, acc + x + bias) fused. z, x and y rows have stride C; bp is a packed [C][32] panel.
template <int MR>
inline void SicMicroKernel(const float* __restrict z, int64_t C, const float* __restrict bp,
                           const float* __restrict bias32, const float* __restrict x,
                           float* __restrict y, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < C; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp + k * 32);
    const __m512 b1 = _mm512_loadu_ps(bp + k * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(z[i * C + k]);
      acc0[i] = _mm512_fmadd_ps(a, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(a, b1, acc1[i]);
    }
  }
  const __m512 bias0 = _mm512_loadu_ps(bias32);
  const __m512 bias1 = _mm512_loadu_ps(bias32 + 16);
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    __m512 r0 = _mm512_add_ps(_mm512_add_ps(acc0[i], _mm512_maskz_loadu_ps(m0, x + i * C)), bias0);
    __m512 r1 =
        _mm512_add_ps(_mm512_add_ps(acc1[i], _mm512_maskz_loadu_ps(m1, x + i * C + 16)), bias1);
    _mm512_mask_storeu_ps(y + i * C, m0, _mm512_max_ps(r0, zero));
    _mm512_mask_storeu_ps(y + i * C + 16, m1, _mm512_max_ps(r1, zero));
  }
}

constexpr int kSicMR = 12;

inline void SicMicroKernelDispatch(int rows, const float* z, int64_t C, const float* bp,
                                   const float* bias32, const float* x, float* y, __mmask16 m0,
                                   __mmask16 m1) {
  switch (rows) {
#define KERAS_EFFCONV_CASE(R) \
  case R:                     \
    SicMicroKernel<R>(z, C, bp, bias32, x, y, m0, m1); \
    break;
    KERAS_EFFCONV_CASE(1) KERAS_EFFCONV_CASE(2) KERAS_EFFCONV_CASE(3) KERAS_EFFCONV_CASE(4)
    KERAS_EFFCONV_CASE(5) KERAS_EFFCONV_CASE(6) KERAS_EFFCONV_CASE(7) KERAS_EFFCONV_CASE(8)
    KERAS_EFFCONV_CASE(9) KERAS_EFFCONV_CASE(10) KERAS_EFFCONV_CASE(11) KERAS_EFFCONV_CASE(12)
#undef KERAS_EFFCONV_CASE
    default:
      break;
  }
}

// One output pixel, one 16-channel chunk, any kernel size, with the image borders.
inline void DepthwisePixel(const float* img, int64_t W, int64_t C, int64_t h, int64_t w,
                           const float* dw, int64_t k, int64_t i0, int64_t i1, int64_t c0,
                           __mmask16 m, float* z) {
  const int64_t pad = k / 2;
  const int64_t j0 = std::max<int64_t>(0, pad - w);
  const int64_t j1 = std::min<int64_t>(k, W + pad - w);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = i0; i < i1; ++i) {
    const float* xr = img + ((h + i - pad) * W + (w - pad)) * C + c0;
    const float* wr = dw + i * k * C + c0;
    for (int64_t j = j0; j < j1; ++j) {
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + j * C), _mm512_maskz_loadu_ps(m, wr + j * C),
                            acc);
    }
  }
  _mm512_mask_storeu_ps(z + w * C + c0, m, acc);
}

template <bool kMasked>
inline __m512 LoadChunk(const float* p, __mmask16 m) {
  return kMasked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
}

template <bool kMasked>
inline void StoreChunk(float* p, __mmask16 m, __m512 v) {
  if (kMasked) {
    _mm512_mask_storeu_ps(p, m, v);
  } else {
    _mm512_storeu_ps(p, v);
  }
}

// Border-free pixels [w_begin, w_end) of one 16-channel chunk, four at a time (four independent
// FMA chains) with the K*K weights in registers.
template <int K, bool kMasked>
inline int64_t DepthwiseInterior(const float* img, int64_t W, int64_t C, int64_t h, int64_t w_begin,
                                 int64_t w_end, const float* dw, int64_t c0, __mmask16 m, float* z) {
  constexpr int64_t pad = K / 2;
  __m512 wv[K * K];
  for (int t = 0; t < K * K; ++t) wv[t] = LoadChunk<kMasked>(dw + t * C + c0, m);
  int64_t w = w_begin;
  for (; w + 4 <= w_end; w += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* base = img + ((h - pad) * W + (w - pad)) * C + c0;
    for (int i = 0; i < K; ++i) {
      for (int j = 0; j < K; ++j) {
        const __m512 wt = wv[i * K + j];
        const float* b = base + (i * W + j) * C;
        a0 = _mm512_fmadd_ps(LoadChunk<kMasked>(b, m), wt, a0);
        a1 = _mm512_fmadd_ps(LoadChunk<kMasked>(b + C, m), wt, a1);
        a2 = _mm512_fmadd_ps(LoadChunk<kMasked>(b + 2 * C, m), wt, a2);
        a3 = _mm512_fmadd_ps(LoadChunk<kMasked>(b + 3 * C, m), wt, a3);
      }
    }
    float* zp = z + w * C + c0;
    StoreChunk<kMasked>(zp, m, a0);
    StoreChunk<kMasked>(zp + C, m, a1);
    StoreChunk<kMasked>(zp + 2 * C, m, a2);
    StoreChunk<kMasked>(zp + 3 * C, m, a3);
  }
  return w;
}

// Depthwise kxk 'same' conv of row h of img[H, W, C] into z[W, C]. K > 0: compile-time kernel
// size for the border-free pixels; the borders (and other k) go through DepthwisePixel.
template <int K>
void DepthwiseRowAvx512(const float* img, int64_t H, int64_t W, int64_t C, int64_t h,
                        const float* dw, int64_t k_runtime, float* z) {
  const int64_t k = K > 0 ? K : k_runtime;
  const int64_t pad = k / 2;
  const int64_t i0 = std::max<int64_t>(0, pad - h);
  const int64_t i1 = std::min<int64_t>(k, H + pad - h);
  const bool rows_full = (i0 == 0 && i1 == k);
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const __mmask16 m = TailMask(C - c0);
    int64_t w = 0;
    if (K > 0 && rows_full && W > 2 * pad) {
      for (; w < pad; ++w) DepthwisePixel(img, W, C, h, w, dw, k, i0, i1, c0, m, z);
      constexpr int KK = K > 0 ? K : 1;
      w = (c0 + 16 <= C) ? DepthwiseInterior<KK, false>(img, W, C, h, w, W - pad, dw, c0, m, z)
                         : DepthwiseInterior<KK, true>(img, W, C, h, w, W - pad, dw, c0, m, z);
    }
    for (; w < W; ++w) DepthwisePixel(img, W, C, h, w, dw, k, i0, i1, c0, m, z);
  }
}
#endif  // __AVX512F__

}  // namespace
}  // namespace keras_effconv

#endif  // KERAS_EFFCONV_OPS_CC_EFFCONV_CPU_H_
