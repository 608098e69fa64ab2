// FusedSICStep: CPU kernel and (under GOOGLE_CUDA) the GPU kernel wrapper.
//
// FusedSICStep works on tiles of consecutive output rows (~64k floats): the depthwise result of a
// tile goes into a per-thread buffer (stays in L2), the CxC projection is a register-blocked GEMM
// (12 pixels x 32 channels, BatchNorm scale folded into the packed projection once per call) whose
// epilogue adds the residual and the bias and applies the relu while writing the output. The
// activation is read from memory once and the output written once; nothing else round-trips.
#include "effconv_kernels.h"  // first: fails fast on a forced build error (tests)
#include "effconv_cpu.h"

namespace keras_effconv {
namespace {

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

REGISTER_KERNEL_BUILDER(Name("FusedSICStep").Device(::tensorflow::DEVICE_CPU), FusedSICStepCpuOp);

#if GOOGLE_CUDA
// GPU wrapper (the kernel is in effconv_kernels.cu.cc).
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

REGISTER_KERNEL_BUILDER(Name("FusedSICStep").Device(::tensorflow::DEVICE_GPU), FusedSICStepGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace keras_effconv
