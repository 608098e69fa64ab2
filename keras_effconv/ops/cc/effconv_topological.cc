// TopologicalProjection: CPU kernel and (under GOOGLE_CUDA) the GPU kernel wrapper.
//
// TopologicalProjection transposes a tile of 32 pixels to channel-major in a per-thread buffer
// (16x16 AVX-512 transposes), so that every kept connection is a broadcast-FMA over 32 contiguous
// pixels (no gathers); its cost is proportional to the connections kept (W_win * Cout per pixel)
// plus the two transposes (Cin + Cout per pixel).
#include "effconv_kernels.h"  // first: fails fast on a forced build error (tests)
#include "effconv_cpu.h"

namespace keras_effconv {
namespace {

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

REGISTER_KERNEL_BUILDER(Name("TopologicalProjection").Device(::tensorflow::DEVICE_CPU),
                        TopologicalProjectionCpuOp);

#if GOOGLE_CUDA
// GPU wrapper (the kernel is in effconv_kernels.cu.cc).
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

REGISTER_KERNEL_BUILDER(Name("TopologicalProjection").Device(::tensorflow::DEVICE_GPU),
                        TopologicalProjectionGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace keras_effconv
