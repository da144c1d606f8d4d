// elementwise.cu: residual add, bias add, dtype conversion and the
// bandwidth probe used by bench/gpu.
#include "common.cuh"

// out[i] = a[i] + b[i] for i < n.
extern "C" __global__ void add(void* out, int dto, const void* a, int dta, const void* b, int dtb, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(out, dto, i, ld(a, dta, i) + ld(b, dtb, i));
}

// x[r*dim+d] += bias[d], in place.
extern "C" __global__ void add_bias(void* x, int dtx, const void* bias, int dtb, long long rows, int dim) {
  long long n = rows * dim;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(x, dtx, i, ld(x, dtx, i) + ld(bias, dtb, i % dim));
}

// out[i] = (dto) in[i].
extern "C" __global__ void convert(void* out, int dto, const void* in, int dti, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(out, dto, i, ld(in, dti, i));
}

// read_probe reads n16 16-byte words and writes one xor per block so that
// the compiler cannot drop the loads. It measures achievable HBM read
// bandwidth (the ceiling the attention benchmarks are compared with).
extern "C" __global__ void read_probe(const uint4* in, long long n16, unsigned int* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n16; i += (long long)gridDim.x * blockDim.x) {
    uint4 v = __ldcs(in + i);
    acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
  }
  unsigned int r = acc.x ^ acc.y ^ acc.z ^ acc.w;
  for (int o = 16; o > 0; o >>= 1) r ^= __shfl_xor_sync(0xffffffffu, r, o);
  if ((threadIdx.x & 31) == 0) atomicXor(sink + blockIdx.x % 1024, r);
}
