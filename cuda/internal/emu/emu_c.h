// emu_c.h: the C interface of kernels.cpp (package emu, cudaemu tag).
#pragma once
#include <stdint.h>
#define EMU_R32F 0
#define EMU_R16F 2
#define EMU_R16BF 14
#ifdef __cplusplus
extern "C" {
#endif
int emu_has_kernel(const char* name);
int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned smem, const uint64_t* args, int nargs);
int emu_gemm(int ta, int tb, int m, int n, int k, float alpha, uint64_t A, int at, int lda, uint64_t B, int bt, int ldb,
             float beta, uint64_t C, int ct, int ldc);
uint64_t emu_malloc(uint64_t n);
void emu_free(uint64_t p);
void emu_memcpy(uint64_t dst, uint64_t src, uint64_t n);
void emu_memset(uint64_t dst, int v, uint64_t n);
#ifdef __cplusplus
}
#endif
