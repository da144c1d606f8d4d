// norm.cu: RMSNorm and RMSNorm with a fused residual add. One block per row.
#include "common.cuh"

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w.
extern "C" __global__ void rmsnorm(void* out, int dto, const void* x, int dtx, const void* w, int dtw, int dim, float eps) {
  __shared__ float scratch[32];
  long long base = (long long)blockIdx.x * dim;
  float ss = 0.f;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float v = ld(x, dtx, base + d);
    ss += v * v;
  }
  float inv = rsqrtf(block_sum(ss, scratch) / dim + eps);
  for (int d = threadIdx.x; d < dim; d += blockDim.x)
    st(out, dto, base + d, ld(x, dtx, base + d) * inv * ld(w, dtw, d));
}

// residual[r] += x[r]; x[r] = rmsnorm(residual[r]) * w (both in place).
// The sum is rounded to residual's dtype before the norm so that the
// stored residual and the normalised value agree.
extern "C" __global__ void fused_add_rmsnorm(void* x, int dtx, void* residual, int dtr, const void* w, int dtw, int dim, float eps) {
  __shared__ float scratch[32];
  long long base = (long long)blockIdx.x * dim;
  float ss = 0.f;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    st(residual, dtr, base + d, ld(x, dtx, base + d) + ld(residual, dtr, base + d));
    float v = ld(residual, dtr, base + d);
    ss += v * v;
  }
  float inv = rsqrtf(block_sum(ss, scratch) / dim + eps);
  for (int d = threadIdx.x; d < dim; d += blockDim.x)
    st(x, dtx, base + d, ld(residual, dtr, base + d) * inv * ld(w, dtw, d));
}
