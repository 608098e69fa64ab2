// CUDA kernels of the keras_effconv op library. Compiled by nvcc only when the build finds nvcc
// AND a CUDA build of TensorFlow (see keras_effconv/ops/custom.py); everything is guarded by
// GOOGLE_CUDA so that the file is empty otherwise.
//
// These are straightforward, correct kernels (grid-stride loops, a shared-memory tiled projection
// GEMM); they have not been tuned on a GPU (the development machine has none).
#if GOOGLE_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "effconv_kernels.h"

namespace keras_effconv {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 16;

inline int Blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

// y[p, o] = sum_k kernel[k, o] * x[p, index[k, o]]; one thread per output element. Out-of-range
// indices contribute nothing (the CPU kernel rejects them; the table is not read on the host here).
__global__ void TopologicalProjectionKernel(int64_t pixels, int64_t cin, int64_t cout,
                                            int64_t window, const float* __restrict__ x,
                                            const float* __restrict__ kernel,
                                            const int32_t* __restrict__ index,
                                            float* __restrict__ y) {
  const int64_t total = pixels * cout;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = e / cout, o = e - p * cout;
    const float* xr = x + p * cin;
    float acc = 0.0f;
    for (int64_t k = 0; k < window; ++k) {
      const int32_t i = __ldg(index + k * cout + o);
      if (i >= 0 && i < cin) acc += __ldg(kernel + k * cout + o) * __ldg(xr + i);
    }
    y[e] = acc;
  }
}

// z = depthwise kxk 'same' conv of x[n, h, w, c] (zero padding); one thread per output element.
__global__ void DepthwiseSameKernel(int64_t n, int64_t h, int64_t w, int64_t c, int64_t k,
                                    const float* __restrict__ x, const float* __restrict__ dw,
                                    float* __restrict__ z) {
  const int64_t total = n * h * w * c;
  const int64_t pad = k / 2;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = e % c;
    const int64_t col = (e / c) % w;
    const int64_t row = (e / (c * w)) % h;
    const int64_t img = e / (c * w * h);
    float acc = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t r = row + i - pad;
      if (r < 0 || r >= h) continue;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t q = col + j - pad;
        if (q < 0 || q >= w) continue;
        acc += __ldg(x + ((img * h + r) * w + q) * c + ch) * __ldg(dw + (i * k + j) * c + ch);
      }
    }
    z[e] = acc;
  }
}

// y[p, o] = relu(x[p, o] + scale[o] * sum_ci z[p, ci] proj[ci, o] + bias[o]): a 16x16 shared-memory
// tiled GEMM with the epilogue fused. grid = (ceil(c / 16), ceil(pixels / 16)), block = 16x16.
__global__ void ProjectResidualReluKernel(int64_t pixels, int64_t c, const float* __restrict__ z,
                                          const float* __restrict__ proj,
                                          const float* __restrict__ scale,
                                          const float* __restrict__ bias,
                                          const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float zs[kTile][kTile + 1];
  __shared__ float ps[kTile][kTile + 1];
  const int64_t p = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  float acc = 0.0f;
  for (int64_t c0 = 0; c0 < c; c0 += kTile) {
    const int64_t zc = c0 + threadIdx.x;
    const int64_t pr = c0 + threadIdx.y;
    zs[threadIdx.y][threadIdx.x] = (p < pixels && zc < c) ? z[p * c + zc] : 0.0f;
    ps[threadIdx.y][threadIdx.x] = (pr < c && o < c) ? proj[pr * c + o] : 0.0f;
    __syncthreads();
    for (int t = 0; t < kTile; ++t) acc += zs[threadIdx.y][t] * ps[t][threadIdx.x];
    __syncthreads();
  }
  if (p < pixels && o < c) {
    const float v = x[p * c + o] + acc * scale[o] + bias[o];
    y[p * c + o] = v > 0.0f ? v : 0.0f;
  }
}

inline cudaStream_t AsStream(const void* stream) {
  return static_cast<cudaStream_t>(const_cast<void*>(stream));
}

}  // namespace

bool LaunchTopologicalProjectionGpu(const void* stream, const TopoProjShape& s, const float* x,
                                    const float* kernel, const int32_t* index, float* y) {
  const int64_t total = s.pixels * s.cout;
  if (total == 0) return true;
  TopologicalProjectionKernel<<<Blocks(total), kThreads, 0, AsStream(stream)>>>(
      s.pixels, s.cin, s.cout, s.window, x, kernel, index, y);
  return cudaGetLastError() == cudaSuccess;
}

bool LaunchFusedSICStepGpu(const void* stream, const FusedSICShape& s, const float* x,
                           const float* dw, const float* proj, const float* scale,
                           const float* bias, float* z, float* y) {
  const int64_t total = s.n * s.h * s.w * s.c;
  if (total == 0) return true;
  cudaStream_t cu = AsStream(stream);
  DepthwiseSameKernel<<<Blocks(total), kThreads, 0, cu>>>(s.n, s.h, s.w, s.c, s.k, x, dw, z);
  if (cudaGetLastError() != cudaSuccess) return false;
  const int64_t pixels = s.n * s.h * s.w;
  const int64_t grid_y = (pixels + kTile - 1) / kTile;
  if (grid_y > 65535) {
    // Large inputs: one launch per chunk of pixel tiles (gridDim.y is limited to 65535).
    for (int64_t p0 = 0; p0 < pixels; p0 += 65535 * kTile) {
      const int64_t chunk = std::min<int64_t>(65535 * kTile, pixels - p0);
      dim3 grid(static_cast<unsigned>((s.c + kTile - 1) / kTile),
                static_cast<unsigned>((chunk + kTile - 1) / kTile));
      ProjectResidualReluKernel<<<grid, dim3(kTile, kTile), 0, cu>>>(
          chunk, s.c, z + p0 * s.c, proj, scale, bias, x + p0 * s.c, y + p0 * s.c);
      if (cudaGetLastError() != cudaSuccess) return false;
    }
    return true;
  }
  dim3 grid(static_cast<unsigned>((s.c + kTile - 1) / kTile), static_cast<unsigned>(grid_y));
  ProjectResidualReluKernel<<<grid, dim3(kTile, kTile), 0, cu>>>(pixels, s.c, z, proj, scale,
                                                                  bias, x, y);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace keras_effconv

#endif  // GOOGLE_CUDA
