// rope.cu: rotary position embedding, rotate-half form (Llama / NeoX).
#include "common.cuh"

// Rotates q [numTokens][numHeads][headDim] and k [numTokens][numKVHeads][headDim]
// in place: for i < headDim/2, (x_i, x_{i+h/2}) -> (x_i c - x_{i+h/2} s,
// x_{i+h/2} c + x_i s) with angle positions[t]*invFreq[i]. invFreq (f32)
// already carries any frequency scaling (e.g. Llama 3's).
extern "C" __global__ void rope(void* q, int dtq, void* k, int dtk, const int* positions, const float* invFreq,
                                long long numTokens, int numHeads, int numKVHeads, int headDim) {
  int half = headDim / 2;
  int heads = numHeads + numKVHeads;
  long long n = numTokens * heads * half;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    int j = (int)(i % half);
    long long th = i / half;
    int h = (int)(th % heads);
    long long t = th / heads;
    float s, c;
    sincosf((float)positions[t] * invFreq[j], &s, &c);
    void* p;
    int dt;
    long long base;
    if (h < numHeads) {
      p = q; dt = dtq; base = (t * numHeads + h) * headDim;
    } else {
      p = k; dt = dtk; base = (t * numKVHeads + (h - numHeads)) * headDim;
    }
    float x1 = ld(p, dt, base + j), x2 = ld(p, dt, base + j + half);
    st(p, dt, base + j, x1 * c - x2 * s);
    st(p, dt, base + j + half, x2 * c + x1 * s);
  }
}
