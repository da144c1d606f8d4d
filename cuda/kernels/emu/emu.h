// emu.h: a small CPU emulation of the CUDA execution model, enough to run
// vserve's kernels (kernels/*.cu compiled as C++20) on a machine without a
// GPU and check their logic against plain references (emu_test.cpp).
//
// Every CUDA thread of a block is an OS thread; blocks run one after the
// other. __syncthreads is a std::barrier; warp intrinsics (__shfl*_sync,
// __ballot_sync, __match_any_sync) meet the lanes named in their mask at a
// per-warp rendezvous, so divergent collectives with partial masks behave
// as on Volta and later. __shared__ variables are static (one block runs
// at a time). Timing, memory spaces and occupancy are not modelled.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct uint4 { unsigned int x, y, z, w; };
struct int2 { int x, y; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }

inline thread_local uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim, gridDim;

// ---- 16-bit floats (round to nearest even) ----
struct __half { uint16_t x; };
struct __nv_bfloat16 { uint16_t x; };

inline float __half2float(__half h) {
  uint32_t s = (h.x >> 15) & 1, e = (h.x >> 10) & 31, m = h.x & 1023, f;
  if (e == 0) {
    if (m == 0) f = s << 31;
    else { float v = std::ldexp((float)m, -24); return s ? -v : v; }
  } else if (e == 31) f = (s << 31) | 0x7f800000u | (m << 13);
  else f = (s << 31) | ((e + 112) << 23) | (m << 13);
  float r; std::memcpy(&r, &f, 4); return r;
}
inline __half __float2half_rn(float v) {
  uint32_t b; std::memcpy(&b, &v, 4);
  uint16_t s = (b >> 16) & 0x8000;
  if (std::isnan(v)) return __half{(uint16_t)(s | 0x7e00)};
  float a = std::fabs(v);
  if (a >= 65520.f) return __half{(uint16_t)(s | 0x7c00)};
  if (a < 6.103515625e-05f) {  // subnormal: multiples of 2^-24
    float q = std::nearbyint(a * 16777216.f);
    return __half{(uint16_t)(s | (uint16_t)q)};
  }
  int e; float fr = std::frexp(a, &e);  // a = fr*2^e, fr in [0.5,1)
  float q = std::nearbyint(std::ldexp(fr, 11));  // 11 significant bits
  if (q >= 2048.f) { q /= 2; e++; }
  uint16_t he = (uint16_t)(e - 1 + 15), hm = (uint16_t)((uint32_t)q - 1024);
  if (he >= 31) return __half{(uint16_t)(s | 0x7c00)};
  return __half{(uint16_t)(s | (he << 10) | hm)};
}
inline float __bfloat162float(__nv_bfloat16 h) { uint32_t f = (uint32_t)h.x << 16; float r; std::memcpy(&r, &f, 4); return r; }
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  uint32_t b; std::memcpy(&b, &v, 4);
  if (std::isnan(v)) return __nv_bfloat16{(uint16_t)((b >> 16) | 0x40)};
  b += 0x7fff + ((b >> 16) & 1);
  return __nv_bfloat16{(uint16_t)(b >> 16)};
}

// ---- bit casts and rounding intrinsics ----
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __ffs(unsigned int v) { return __builtin_ffs((int)v); }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __double2float_rn(double d) { return (float)d; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
using std::min; using std::max; using std::exp; using std::log; using std::fmaf; using std::fmaxf; using std::nextafterf;
template <class T> inline T __ldcs(const T* p) { return *p; }

// ---- atomics ----
template <class T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
inline int atomicMin(int* p, int v) { std::atomic_ref<int> a(*p); int o = a.load(); while (v < o && !a.compare_exchange_weak(o, v)) {} return o; }
inline int atomicMax(int* p, int v) { std::atomic_ref<int> a(*p); int o = a.load(); while (v > o && !a.compare_exchange_weak(o, v)) {} return o; }
inline unsigned int atomicXor(unsigned int* p, unsigned int v) { return std::atomic_ref<unsigned int>(*p).fetch_xor(v); }

// ---- block barrier and warp rendezvous ----
struct EmuWarp {
  struct Group { int arrived = 0, left = 0; bool leaving = false; uint64_t v[32]; int p[32]; uint64_t sv[32]; int sp[32]; };
  std::mutex m;
  std::condition_variable cv;
  std::map<unsigned, Group> groups;
};
struct EmuBlock {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<EmuWarp> warps;
};
inline EmuBlock* emu_block;
inline std::vector<unsigned char> emu_dynamic_smem(1 << 20);

inline void __syncthreads() { emu_block->bar->arrive_and_wait(); }

// emu_exchange meets the lanes of mask and gives every one the values
// (and predicates) of all of them.
inline void emu_exchange(unsigned mask, uint64_t v, int p, uint64_t* ov, int* op) {
  int lane = threadIdx.x & 31;
  EmuWarp& w = emu_block->warps[threadIdx.x >> 5];
  std::unique_lock<std::mutex> lk(w.m);
  auto& g = w.groups[mask];
  w.cv.wait(lk, [&] { return !g.leaving; });
  g.v[lane] = v; g.p[lane] = p;
  int n = __builtin_popcount(mask);
  if (++g.arrived == n) {
    std::memcpy(g.sv, g.v, sizeof g.v); std::memcpy(g.sp, g.p, sizeof g.p);
    g.leaving = true; w.cv.notify_all();
  } else {
    w.cv.wait(lk, [&] { return g.leaving; });
  }
  std::memcpy(ov, g.sv, sizeof g.sv); std::memcpy(op, g.sp, sizeof g.sp);
  if (++g.left == n) { g.arrived = g.left = 0; g.leaving = false; w.cv.notify_all(); }
}
template <class T> inline uint64_t emu_bits(T v) { uint64_t b = 0; std::memcpy(&b, &v, sizeof(T)); return b; }
template <class T> inline T emu_val(uint64_t b) { T v; std::memcpy(&v, &b, sizeof(T)); return v; }

template <class T> inline T __shfl_sync(unsigned mask, T v, int src) {
  uint64_t ov[32]; int op[32]; emu_exchange(mask, emu_bits(v), 0, ov, op); return emu_val<T>(ov[src & 31]);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int x) {
  uint64_t ov[32]; int op[32]; emu_exchange(mask, emu_bits(v), 0, ov, op); return emu_val<T>(ov[(threadIdx.x & 31) ^ x]);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d) {
  uint64_t ov[32]; int op[32]; emu_exchange(mask, emu_bits(v), 0, ov, op);
  int lane = threadIdx.x & 31; return lane >= (int)d ? emu_val<T>(ov[lane - d]) : v;
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  uint64_t ov[32]; int op[32]; emu_exchange(mask, 0, pred ? 1 : 0, ov, op);
  unsigned r = 0; for (int l = 0; l < 32; l++) if ((mask >> l & 1) && op[l]) r |= 1u << l; return r;
}
template <class T> inline unsigned __match_any_sync(unsigned mask, T v) {
  uint64_t ov[32]; int op[32]; uint64_t mine = emu_bits(v); emu_exchange(mask, mine, 0, ov, op);
  unsigned r = 0; for (int l = 0; l < 32; l++) if ((mask >> l & 1) && ov[l] == mine) r |= 1u << l; return r;
}

// EmuPool is a set of n persistent threads that run one block at a time
// (spawning 1024 threads per block would dominate the run time).
struct EmuPool {
  unsigned n;
  std::mutex m;
  std::condition_variable cv;
  uint64_t gen = 0;
  unsigned remaining = 0;
  const std::function<void()>* job = nullptr;
  std::vector<std::thread> ts;
  explicit EmuPool(unsigned n) : n(n) {
    for (unsigned t = 0; t < n; t++) ts.emplace_back([this, t] { loop(t); });
  }
  void loop(unsigned t) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void()>* j;
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return gen != seen; });
        seen = gen;
        j = job;
      }
      threadIdx = uint3{t, 0, 0};
      (*j)();
      emu_block->bar->arrive_and_drop();
      std::lock_guard<std::mutex> lk(m);
      if (--remaining == 0) cv.notify_all();
    }
  }
  void run(const std::function<void()>& f) {
    std::unique_lock<std::mutex> lk(m);
    job = &f;
    remaining = n;
    gen++;
    cv.notify_all();
    cv.wait(lk, [&] { return remaining == 0; });
  }
};

// emu_pool returns the pool for blocks of n threads (never destroyed: its
// threads live as long as the process).
inline EmuPool* emu_pool(unsigned n) {
  static std::mutex m;
  static std::map<unsigned, EmuPool*> pools;
  std::lock_guard<std::mutex> lk(m);
  auto& p = pools[n];
  if (!p) p = new EmuPool(n);
  return p;
}

// emu_launch runs kernel f over the grid, one block at a time.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& f) {
  unsigned n = block.x * block.y * block.z;
  gridDim = grid;
  blockDim = block;
  EmuPool* pool = emu_pool(n);
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        EmuBlock b;
        b.bar = std::make_unique<std::barrier<>>(n);
        b.warps = std::vector<EmuWarp>((n + 31) / 32);
        emu_block = &b;
        blockIdx = uint3{x, y, z};
        pool->run(f);
        emu_block = nullptr;
      }
}
