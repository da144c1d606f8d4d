// common.cuh: helpers shared by every vserve kernel family.
//
// Conventions (see cuda/launch.go):
//   - every kernel is extern "C" so the Go side finds it by name;
//   - every kernel parameter is a pointer, an int, a long long or a float,
//     each passed from Go in its own 8-byte slot;
//   - dtype codes match runtime/kernel.DType: 0 f32, 1 f16, 2 bf16, 3 i32;
//   - arithmetic is done in fp32 whatever the storage type.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

// DYNAMIC_SHARED declares the block's dynamic shared memory (emu/ gives
// it a static buffer when the kernels are compiled as plain C++).
#ifdef __CUDACC__
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#else
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(emu_dynamic_smem.data())
#endif

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3

__device__ __forceinline__ float ld(const void* p, int dt, long long i) {
  switch (dt) {
    case DT_F16: return __half2float(((const __half*)p)[i]);
    case DT_BF16: return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    default: return ((const float*)p)[i];
  }
}

__device__ __forceinline__ void st(void* p, int dt, long long i, float v) {
  switch (dt) {
    case DT_F16: ((__half*)p)[i] = __float2half_rn(v); break;
    case DT_BF16: ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v); break;
    default: ((float*)p)[i] = v; break;
  }
}

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// block_sum returns the sum of v over the block to every thread. scratch
// must hold 32 floats; blockDim.x must be a multiple of 32.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// load16 reads 16 aligned bytes (one vector load on the device; a memcpy
// in the emulation, which has no aliasing exemption for uint4).
__device__ __forceinline__ uint4 load16(const void* p) {
#ifdef __CUDACC__
  return *reinterpret_cast<const uint4*>(p);
#else
  uint4 v;
  memcpy(&v, p, sizeof v);
  return v;
#endif
}

// load16_stream is load16 for data read once per kernel and never written
// by it (paged K/V): the non-coherent path, without allocating in L1.
__device__ __forceinline__ uint4 load16_stream(const void* p) {
#ifdef __CUDACC__
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
#else
  return load16(p);
#endif
}
