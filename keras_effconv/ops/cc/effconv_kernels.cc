// CPU kernels (and, under GOOGLE_CUDA, the GPU kernel wrappers) of the keras_effconv op library.
//
// Both CPU kernels split their work into fixed blocks run on the TF CPU device's worker threads
// (tensorflow_cpu_worker_threads()->workers->ParallelFor) and keep channels innermost. When the
// library is built for an AVX-512 CPU (-march=native) they use the AVX-512 paths below; otherwise
// portable loops that g++ -O3 vectorises (and Eigen's GEMM for the projection).
//
// FusedSICStep works on tiles of consecutive output rows (~64k floats): the depthwise result of a
// tile goes into a per-thread buffer (stays in L2), the CxC projection is a register-blocked GEMM
// (12 pixels x 32 channels, BatchNorm scale folded into the packed projection once per call) whose
// epilogue adds the residual and the bias and applies the relu while writing the output. The
// activation is read from memory once and the output written once; nothing else round-trips.
//
// TopologicalProjection transposes a tile of 32 pixels to channel-major in a per-thread buffer
// (16x16 AVX-512 transposes), so that every kept connection is a broadcast-FMA over 32 contiguous
// pixels (no gathers); its cost is proportional to the connections kept (W_win * Cout per pixel)
// plus the two transposes (Cin + Cout per pixel).
#include "effconv_kernels.h"  // first: fails fast on a forced build error (tests)

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
void ParallelForBlocks(OpKernelContext* ctx, int64_t total, int64_t block,
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

bool ValidateTopoProj(OpKernelContext* ctx, TopoProjShape* s) {
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

bool ValidateFusedSIC(OpKernelContext* ctx, FusedSICShape* s) {
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

// ------------------------------------------------------------------------------------------------
// CPU: TopologicalProjection
// ------------------------------------------------------------------------------------------------

constexpr int kTopoTile = 32;  // pixels per tile: two AVX-512 (four AVX2) accumulators per output.

class TopologicalProjectionCpuOp : public OpKernel {
 public:
  explicit TopologicalProjectionCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    TopoProjShape s;
    if (!ValidateTopoProj(ctx, &s)) return;
    const Tensor& x_t = ctx->input(0);
    TensorShape out_shape = x_t.shape();
    out_shape.set_dim(3, s.cout);
    Tensor* y_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &y_t));
    if (s.pixels == 0 || s.cout == 0) return;
    float* y = y_t->flat<float>().data();
    if (s.window == 0 || s.cin == 0) {
      std::fill(y, y + s.pixels * s.cout, 0.0f);
      return;
    }
    const float* x = x_t.flat<float>().data();
    const float* kernel = ctx->input(1).flat<float>().data();
    const int32_t* index = ctx->input(2).flat<int32_t>().data();

    const int64_t win = s.window, cout = s.cout, cin = s.cin;
    for (int64_t e = 0; e < win * cout; ++e) {
      const int32_t i = index[e];
      OP_REQUIRES(ctx, i >= 0 && i < cin,
                  errors::InvalidArgument("TopologicalProjection: index[", e / cout, ", ", e % cout,
                                          "] = ", i, " is outside [0, Cin = ", cin, ")"));
    }
    const int64_t tiles = (s.pixels + kTopoTile - 1) / kTopoTile;
    const int64_t cost = kTopoTile * (win * cout + cin + cout);
#if KERAS_EFFCONV_AVX512
    // Tables regrouped by 4 output channels, [cout/4][win][4] (cout padded with zero weights), so
    // the inner loop reads them contiguously; indices become offsets into the transposed tile.
    constexpr int kOB = 4;
    const int64_t cout_pad = (cout + kOB - 1) / kOB * kOB;
    std::vector<float> kt(cout_pad * win, 0.0f);
    std::vector<int32_t> it(cout_pad * win, 0);
    for (int64_t k = 0; k < win; ++k) {
      for (int64_t o = 0; o < cout; ++o) {
        const int64_t e = ((o / kOB) * win + k) * kOB + (o % kOB);
        kt[e] = kernel[k * cout + o];
        it[e] = index[k * cout + o] * kTopoTile;
      }
    }
    const float* ktp = kt.data();
    const int32_t* itp = it.data();
    auto work = [&](int64_t begin, int64_t end) {
      float* xt = Scratch(0, cin * kTopoTile);
      float* yt = Scratch(1, cout_pad * kTopoTile);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t p0 = t * kTopoTile;
        const int64_t np = std::min<int64_t>(kTopoTile, s.pixels - p0);
        const float* xs = x + p0 * cin;
        // x tile [np, cin] -> xt [cin, 32] (pixels innermost).
        int64_t c = 0;
        if (np == kTopoTile) {
          for (; c + 16 <= cin; c += 16) {
            Transpose16x16(xs + c, cin, xt + c * kTopoTile, kTopoTile);
            Transpose16x16(xs + 16 * cin + c, cin, xt + c * kTopoTile + 16, kTopoTile);
          }
        } else {
          std::fill(xt, xt + cin * kTopoTile, 0.0f);
        }
        for (int64_t p = 0; p < np; ++p) {
          for (int64_t cc = c; cc < cin; ++cc) xt[cc * kTopoTile + p] = xs[p * cin + cc];
        }
        // Four output channels at a time: 8 independent FMA chains over 32 pixels.
        const float* xtp = xt;
        for (int64_t ob = 0; ob < cout_pad / kOB; ++ob) {
          __m512 acc[kOB][2];
          for (int j = 0; j < kOB; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
          const float* kb = ktp + ob * win * kOB;
          const int32_t* ib = itp + ob * win * kOB;
          for (int64_t k = 0; k < win; ++k) {
            for (int j = 0; j < kOB; ++j) {
              const __m512 wk = _mm512_set1_ps(kb[k * kOB + j]);
              const float* src = xtp + ib[k * kOB + j];
              acc[j][0] = _mm512_fmadd_ps(wk, _mm512_load_ps(src), acc[j][0]);
              acc[j][1] = _mm512_fmadd_ps(wk, _mm512_load_ps(src + 16), acc[j][1]);
            }
          }
          for (int j = 0; j < kOB; ++j) {
            float* dst = yt + (ob * kOB + j) * kTopoTile;
            _mm512_store_ps(dst, acc[j][0]);
            _mm512_store_ps(dst + 16, acc[j][1]);
          }
        }
        // yt [cout, 32] -> y tile [np, cout].
        float* ys = y + p0 * cout;
        int64_t o = 0;
        if (np == kTopoTile) {
          for (; o + 16 <= cout; o += 16) {
            Transpose16x16(yt + o * kTopoTile, kTopoTile, ys + o, cout);
            Transpose16x16(yt + o * kTopoTile + 16, kTopoTile, ys + 16 * cout + o, cout);
          }
        }
        for (int64_t p = 0; p < np; ++p) {
          for (int64_t oo = o; oo < cout; ++oo) ys[p * cout + oo] = yt[oo * kTopoTile + p];
        }
      }
    };
#else
    // Output-major copies of the tables; indices become offsets into the transposed tile.
    std::vector<float> kt(win * cout);
    std::vector<int64_t> it(win * cout);
    for (int64_t k = 0; k < win; ++k) {
      for (int64_t o = 0; o < cout; ++o) {
        kt[o * win + k] = kernel[k * cout + o];
        it[o * win + k] = static_cast<int64_t>(index[k * cout + o]) * kTopoTile;
      }
    }
    auto work = [&](int64_t begin, int64_t end) {
      alignas(64) float acc[kTopoTile];
      std::vector<float> xt(cin * kTopoTile);
      std::vector<float> yt(cout * kTopoTile);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t p0 = t * kTopoTile;
        const int np = static_cast<int>(std::min<int64_t>(kTopoTile, s.pixels - p0));
        const float* xs = x + p0 * cin;
        if (np < kTopoTile) std::fill(xt.begin(), xt.end(), 0.0f);
        for (int p = 0; p < np; ++p) {
          const float* xr = xs + p * cin;
          for (int64_t c = 0; c < cin; ++c) xt[c * kTopoTile + p] = xr[c];
        }
        const float* xtp = xt.data();
        for (int64_t o = 0; o < cout; ++o) {
          for (int p = 0; p < kTopoTile; ++p) acc[p] = 0.0f;
          const float* ko = kt.data() + o * win;
          const int64_t* io = it.data() + o * win;
          for (int64_t k = 0; k < win; ++k) {
            const float wk = ko[k];
            const float* src = xtp + io[k];
            for (int p = 0; p < kTopoTile; ++p) acc[p] += wk * src[p];
          }
          float* dst = yt.data() + o * kTopoTile;
          for (int p = 0; p < kTopoTile; ++p) dst[p] = acc[p];
        }
        float* ys = y + p0 * cout;
        for (int p = 0; p < np; ++p) {
          float* yr = ys + p * cout;
          for (int64_t o = 0; o < cout; ++o) yr[o] = yt[o * kTopoTile + p];
        }
      }
    };
#endif  // KERAS_EFFCONV_AVX512
    // Blocks of ~4M multiply-adds (tens of microseconds) or one tile.
    ParallelForBlocks(ctx, tiles, (int64_t{4} << 20) / std::max<int64_t>(1, cost), work);
  }
};

// ------------------------------------------------------------------------------------------------
// CPU: FusedSICStep
// ------------------------------------------------------------------------------------------------

// z[w, :] = depthwise kxk 'same' conv of row h of one image img[H, W, C] (zero padding).
inline void DepthwiseRow(const float* img, int64_t H, int64_t W, int64_t C, int64_t h,
                         const float* dw, int64_t k, float* z) {
  const int64_t pad = k / 2;
  std::fill(z, z + W * C, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t hh = h + i - pad;
    if (hh < 0 || hh >= H) continue;
    const float* xr = img + hh * W * C;
    for (int64_t j = 0; j < k; ++j) {
      const float* wv = dw + (i * k + j) * C;
      const int64_t off = j - pad;
      const int64_t w0 = std::max<int64_t>(0, -off);
      const int64_t w1 = std::min<int64_t>(W, W - off);
      for (int64_t w = w0; w < w1; ++w) {
        float* __restrict zp = z + w * C;
        const float* __restrict xp = xr + (w + off) * C;
        for (int64_t c = 0; c < C; ++c) zp[c] += xp[c] * wv[c];
      }
    }
  }
}

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class FusedSICStepCpuOp : public OpKernel {
 public:
  explicit FusedSICStepCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    FusedSICShape s;
    if (!ValidateFusedSIC(ctx, &s)) return;
    const Tensor& x_t = ctx->input(0);
    Tensor* y_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x_t.shape(), &y_t));
    if (x_t.NumElements() == 0) return;
    const float* x = x_t.flat<float>().data();
    const float* dw = ctx->input(1).flat<float>().data();
    const float* proj = ctx->input(2).flat<float>().data();
    const float* scale = ctx->input(3).flat<float>().data();
    const float* bias = ctx->input(4).flat<float>().data();
    float* y = y_t->flat<float>().data();
    const int64_t H = s.h, W = s.w, C = s.c, k = s.k;

    const int64_t row_floats = W * C;
    const int64_t rows = s.n * H;

#if KERAS_EFFCONV_AVX512
    // The projection with the BatchNorm scale folded in, packed once per call into zero-padded
    // panels of 32 output channels: packed[panel][ci][32].
    const int64_t panels = (C + 31) / 32;
    std::vector<float> packed(panels * C * 32, 0.0f);
    std::vector<float> bias_pad(panels * 32, 0.0f);
    for (int64_t ci = 0; ci < C; ++ci) {
      for (int64_t o = 0; o < C; ++o) {
        packed[((o / 32) * C + ci) * 32 + (o % 32)] = proj[ci * C + o] * scale[o];
      }
    }
    std::copy(bias, bias + C, bias_pad.begin());
    const float* packed_p = packed.data();
    const float* bias_p = bias_pad.data();
    // Tile of whole rows whose depthwise buffer stays in L2 (~256 KiB): it is re-read once per
    // 32-channel panel while the panel (C x 32 floats) stays in L1.
    const int64_t rows_per_tile = std::max<int64_t>(1, (64 * 1024) / std::max<int64_t>(1, row_floats));
    auto work = [&](int64_t begin, int64_t end) {
      const int64_t tile_rows = std::min(rows_per_tile, end - begin);
      float* z = Scratch(0, tile_rows * row_floats);
      for (int64_t r0 = begin; r0 < end; r0 += tile_rows) {
        const int64_t r1 = std::min(end, r0 + tile_rows);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / H, h = r % H;
          const float* img = x + n * H * row_floats;
          float* zr = z + (r - r0) * row_floats;
          if (k == 3) {
            DepthwiseRowAvx512<3>(img, H, W, C, h, dw, k, zr);
          } else if (k == 5) {
            DepthwiseRowAvx512<5>(img, H, W, C, h, dw, k, zr);
          } else {
            DepthwiseRowAvx512<0>(img, H, W, C, h, dw, k, zr);
          }
        }
        const int64_t pix = (r1 - r0) * W;
        const float* xs = x + r0 * row_floats;
        float* ys = y + r0 * row_floats;
        for (int64_t panel = 0; panel < panels; ++panel) {
          const int64_t o0 = panel * 32;
          const __mmask16 m0 = TailMask(C - o0), m1 = TailMask(C - o0 - 16);
          const float* bp = packed_p + panel * C * 32;
          for (int64_t p = 0; p < pix; p += kSicMR) {
            const int mr = static_cast<int>(std::min<int64_t>(kSicMR, pix - p));
            SicMicroKernelDispatch(mr, z + p * C, C, bp, bias_p + o0, xs + p * C + o0,
                                   ys + p * C + o0, m0, m1);
          }
        }
      }
    };
#else
    // BatchNorm scale folded into the projection columns, once per call.
    std::vector<float> projs(C * C);
    for (int64_t ci = 0; ci < C; ++ci) {
      for (int64_t o = 0; o < C; ++o) projs[ci * C + o] = proj[ci * C + o] * scale[o];
    }
    const float* projs_p = projs.data();
    // Tile of whole rows whose depthwise buffer stays around 64 KiB.
    const int64_t rows_per_tile = std::max<int64_t>(1, (16 * 1024) / std::max<int64_t>(1, row_floats));
    auto work = [&](int64_t begin, int64_t end) {
      const int64_t tile_rows = std::min(rows_per_tile, end - begin);
      std::vector<float> z(tile_rows * row_floats);
      Eigen::Map<const RowMajorMatrix> pm(projs_p, C, C);
      for (int64_t r0 = begin; r0 < end; r0 += tile_rows) {
        const int64_t r1 = std::min(end, r0 + tile_rows);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / H, h = r % H;
          DepthwiseRow(x + n * H * row_floats, H, W, C, h, dw, k, z.data() + (r - r0) * row_floats);
        }
        const int64_t pix = (r1 - r0) * W;
        Eigen::Map<const RowMajorMatrix> zm(z.data(), pix, C);
        Eigen::Map<RowMajorMatrix> ym(y + r0 * row_floats, pix, C);
        ym.noalias() = zm * pm;
        const float* __restrict xs = x + r0 * row_floats;
        float* __restrict ys = y + r0 * row_floats;
        for (int64_t p = 0; p < pix; ++p) {
          const float* __restrict xr = xs + p * C;
          float* __restrict yr = ys + p * C;
          for (int64_t c = 0; c < C; ++c) yr[c] = std::max(0.0f, yr[c] + xr[c] + bias[c]);
        }
      }
    };
#endif  // KERAS_EFFCONV_AVX512
    // One block per row tile (the tile is what the scratch buffer is sized for).
    ParallelForBlocks(ctx, rows, rows_per_tile, work);
  }
};

REGISTER_KERNEL_BUILDER(Name("TopologicalProjection").Device(::tensorflow::DEVICE_CPU),
                        TopologicalProjectionCpuOp);
REGISTER_KERNEL_BUILDER(Name("FusedSICStep").Device(::tensorflow::DEVICE_CPU), FusedSICStepCpuOp);

// ------------------------------------------------------------------------------------------------
// GPU wrappers (the kernels are in effconv_kernels.cu.cc).
// ------------------------------------------------------------------------------------------------
#if GOOGLE_CUDA

class TopologicalProjectionGpuOp : public OpKernel {
 public:
  explicit TopologicalProjectionGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    TopoProjShape s;
    if (!ValidateTopoProj(ctx, &s)) return;
    TensorShape out_shape = ctx->input(0).shape();
    out_shape.set_dim(3, s.cout);
    Tensor* y_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &y_t));
    if (y_t->NumElements() == 0) return;
    const auto& stream = ctx->eigen_gpu_device().stream();
    // Out-of-range indices contribute nothing on the GPU (the table is not read on the host).
    OP_REQUIRES(ctx,
                LaunchTopologicalProjectionGpu(static_cast<const void*>(stream), s,
                                               ctx->input(0).flat<float>().data(),
                                               ctx->input(1).flat<float>().data(),
                                               ctx->input(2).flat<int32_t>().data(),
                                               y_t->flat<float>().data()),
                errors::Internal("TopologicalProjection: CUDA kernel launch failed"));
  }
};

class FusedSICStepGpuOp : public OpKernel {
 public:
  explicit FusedSICStepGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    FusedSICShape s;
    if (!ValidateFusedSIC(ctx, &s)) return;
    const Tensor& x_t = ctx->input(0);
    Tensor* y_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x_t.shape(), &y_t));
    if (x_t.NumElements() == 0) return;
    Tensor z_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, x_t.shape(), &z_t));
    const auto& stream = ctx->eigen_gpu_device().stream();
    OP_REQUIRES(ctx,
                LaunchFusedSICStepGpu(static_cast<const void*>(stream), s, x_t.flat<float>().data(),
                                      ctx->input(1).flat<float>().data(),
                                      ctx->input(2).flat<float>().data(),
                                      ctx->input(3).flat<float>().data(),
                                      ctx->input(4).flat<float>().data(),
                                      z_t.flat<float>().data(), y_t->flat<float>().data()),
                errors::Internal("FusedSICStep: CUDA kernel launch failed"));
  }
};

REGISTER_KERNEL_BUILDER(Name("TopologicalProjection").Device(::tensorflow::DEVICE_GPU),
                        TopologicalProjectionGpuOp);
REGISTER_KERNEL_BUILDER(Name("FusedSICStep").Device(::tensorflow::DEVICE_GPU), FusedSICStepGpuOp);

#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace keras_effconv
