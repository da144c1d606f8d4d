//go:build cudaemu

// kernels.cpp: the CUDA kernels of cuda/kernels compiled as C++ against
// the execution-model emulation of cuda/kernels/emu, behind a C interface
// that takes kernel arguments in 8-byte slots exactly as cuLaunchKernel
// receives them from package cuda.
//
// The go command does not see the headers included from outside this
// directory: after editing cuda/kernels, rebuild with `go test -a` (or
// touch this file) so that a cached object is not reused.
#include "../../kernels/common.cuh"
#include "../../kernels/activation.cu"
#include "../../kernels/attention.cu"
#include "../../kernels/cache.cu"
#include "../../kernels/elementwise.cu"
#include "../../kernels/gather.cu"
#include "../../kernels/logprobs.cu"
#include "../../kernels/norm.cu"
#include "../../kernels/rope.cu"
#include "../../kernels/sampling.cu"

#include <cstdlib>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "emu_c.h"

namespace {

// unpack reads a parameter from its slot the way the driver does: the
// parameter's own size from the start of the slot.
template <class T> T unpack(uint64_t v) {
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<T>(static_cast<uintptr_t>(v));
  } else {
    static_assert(sizeof(T) <= 8);
    T t;
    std::memcpy(&t, &v, sizeof(T));
    return t;
  }
}

template <class... A, size_t... I>
void call_with(void (*f)(A...), const uint64_t* a, std::index_sequence<I...>) {
  f(unpack<A>(a[I])...);
}

struct Entry {
  int nargs;
  std::function<void(const uint64_t*)> call;
};

template <class... A> Entry entry(void (*f)(A...)) {
  return Entry{(int)sizeof...(A), [f](const uint64_t* a) { call_with(f, a, std::index_sequence_for<A...>{}); }};
}

const std::map<std::string, Entry>& table() {
  static const std::map<std::string, Entry> t = {
      {"silu_mul", entry(silu_mul)},
      {"add", entry(add)},
      {"add_bias", entry(add_bias)},
      {"convert", entry(convert)},
      {"read_probe", entry(read_probe)},
      {"gather_rows", entry(gather_rows)},
      {"reshape_and_cache", entry(reshape_and_cache)},
      {"rope", entry(rope)},
      {"rmsnorm", entry(rmsnorm)},
      {"fused_add_rmsnorm", entry(fused_add_rmsnorm)},
      {"paged_attention_f32", entry(paged_attention_f32)},
      {"paged_attention_f16", entry(paged_attention_f16)},
      {"paged_attention_bf16", entry(paged_attention_bf16)},
      {"paged_attention_combine", entry(paged_attention_combine)},
      {"paged_decode_f32_h64_g1", entry(paged_decode_f32_h64_g1)},
      {"paged_decode_f32_h64_g2", entry(paged_decode_f32_h64_g2)},
      {"paged_decode_f32_h64_g4", entry(paged_decode_f32_h64_g4)},
      {"paged_decode_f32_h64_g8", entry(paged_decode_f32_h64_g8)},
      {"paged_decode_f32_h128_g1", entry(paged_decode_f32_h128_g1)},
      {"paged_decode_f32_h128_g2", entry(paged_decode_f32_h128_g2)},
      {"paged_decode_f32_h128_g4", entry(paged_decode_f32_h128_g4)},
      {"paged_decode_f32_h128_g8", entry(paged_decode_f32_h128_g8)},
      {"paged_decode_f16_h64_g1", entry(paged_decode_f16_h64_g1)},
      {"paged_decode_f16_h64_g2", entry(paged_decode_f16_h64_g2)},
      {"paged_decode_f16_h64_g4", entry(paged_decode_f16_h64_g4)},
      {"paged_decode_f16_h64_g8", entry(paged_decode_f16_h64_g8)},
      {"paged_decode_f16_h128_g1", entry(paged_decode_f16_h128_g1)},
      {"paged_decode_f16_h128_g2", entry(paged_decode_f16_h128_g2)},
      {"paged_decode_f16_h128_g4", entry(paged_decode_f16_h128_g4)},
      {"paged_decode_f16_h128_g8", entry(paged_decode_f16_h128_g8)},
      {"paged_decode_bf16_h64_g1", entry(paged_decode_bf16_h64_g1)},
      {"paged_decode_bf16_h64_g2", entry(paged_decode_bf16_h64_g2)},
      {"paged_decode_bf16_h64_g4", entry(paged_decode_bf16_h64_g4)},
      {"paged_decode_bf16_h64_g8", entry(paged_decode_bf16_h64_g8)},
      {"paged_decode_bf16_h128_g1", entry(paged_decode_bf16_h128_g1)},
      {"paged_decode_bf16_h128_g2", entry(paged_decode_bf16_h128_g2)},
      {"paged_decode_bf16_h128_g4", entry(paged_decode_bf16_h128_g4)},
      {"paged_decode_bf16_h128_g8", entry(paged_decode_bf16_h128_g8)},
      {"sample_rows", entry(sample_rows)},
      {"raw_logprobs", entry(raw_logprobs)},
  };
  return t;
}

float load(const void* p, int dt, long long i) {
  switch (dt) {
    case EMU_R16F: return __half2float(((const __half*)p)[i]);
    case EMU_R16BF: return __bfloat162float(((const __nv_bfloat16*)p)[i]);
  }
  return ((const float*)p)[i];
}

void store(void* p, int dt, long long i, float v) {
  switch (dt) {
    case EMU_R16F: ((__half*)p)[i] = __float2half_rn(v); break;
    case EMU_R16BF: ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v); break;
    default: ((float*)p)[i] = v;
  }
}

}  // namespace

extern "C" int emu_has_kernel(const char* name) { return table().count(name) ? 1 : 0; }

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned smem,
                          const uint64_t* args, int nargs) {
  auto it = table().find(name);
  if (it == table().end()) return 1;
  if (it->second.nargs != nargs) return 2;
  if (smem > emu_dynamic_smem.size()) return 3;
  if (bx == 0 || bx > 1024 || bx % 32 != 0) return 4;
  dim3 g, b;
  g.x = gx; g.y = gy; g.z = gz;
  b.x = bx;
  std::memset(emu_dynamic_smem.data(), 0xff, smem);  // garbage, as on a GPU
  const Entry& e = it->second;
  ::emu_launch(g, b, [&] { e.call(args); });
  return 0;
}

// emu_gemm is cublasGemmEx for the column-major case package cuda uses:
// C(m×n) = alpha·op(A)·op(B) + beta·C, fp32 accumulation.
extern "C" int emu_gemm(int ta, int tb, int m, int n, int k, float alpha, uint64_t A, int at, int lda, uint64_t B,
                        int bt, int ldb, float beta, uint64_t C, int ct, int ldc) {
  const void* a = (const void*)(uintptr_t)A;
  const void* bp = (const void*)(uintptr_t)B;
  void* c = (void*)(uintptr_t)C;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      float s = 0;
      for (int l = 0; l < k; l++) {
        float x = load(a, at, ta ? (long long)i * lda + l : (long long)l * lda + i);
        float y = load(bp, bt, tb ? (long long)l * ldb + j : (long long)j * ldb + l);
        s = std::fmaf(x, y, s);
      }
      long long ci = (long long)j * ldc + i;
      float prev = beta != 0 ? load(c, ct, ci) : 0.f;
      store(c, ct, ci, alpha * s + beta * prev);
    }
  return 0;
}

extern "C" uint64_t emu_malloc(uint64_t n) { return (uint64_t)(uintptr_t)std::malloc(n ? n : 1); }
extern "C" void emu_free(uint64_t p) { std::free((void*)(uintptr_t)p); }
extern "C" void emu_memcpy(uint64_t dst, uint64_t src, uint64_t n) { std::memcpy((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n); }
extern "C" void emu_memset(uint64_t dst, int v, uint64_t n) { std::memset((void*)(uintptr_t)dst, v, n); }
