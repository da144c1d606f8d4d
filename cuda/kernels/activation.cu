// activation.cu: the gated MLP activation.
#include "common.cuh"

// out[r*dim+d] = silu(gate[r*dim+d]) * up[r*dim+d], silu(x) = x / (1 + e^-x).
extern "C" __global__ void silu_mul(void* out, int dto, const void* gate, int dtg, const void* up, int dtu, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float g = ld(gate, dtg, i);
    st(out, dto, i, g / (1.f + expf(-g)) * ld(up, dtu, i));
  }
}
