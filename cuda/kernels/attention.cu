// attention.cu: paged attention over block tables for a flat batch that
// mixes prefill chunks and single-token decodes.
//
// Grid: x = tiles of R query rows (a row is one (query token, query head)
// pair of a GQA group), y = sequence * numKVHeads + kvHead, z = KV split.
// Each CTA walks the KV blocks of its split, one cache block at a time:
// K and V tiles are staged in shared memory as fp32, scores use an online
// softmax, accumulation is fp32. With one split the CTA writes the output;
// with several it writes (max, sum, unnormalised acc) partials that
// paged_attention_combine merges (flash-decoding).
//
// Query row i of sequence s (i < qlen) sits at absolute position
// seqLen - qlen + i and attends to cached positions [0, that position].
#include "common.cuh"

#define ATTN_THREADS 128

template <typename KV>
__device__ __forceinline__ void load_tile(float* dst, int dstStride, const KV* src, int rows, int cols) {
  int n = rows * cols;
  constexpr int V = 16 / sizeof(KV);
  if (cols % V == 0 && ((uintptr_t)src & 15) == 0) {
    for (int v = threadIdx.x; v < n / V; v += blockDim.x) {
      uint4 raw = ((const uint4*)src)[v];
      KV e[V];
      memcpy(e, &raw, sizeof raw);  // not a pointer cast: no aliasing assumptions
      int idx = v * V, r = idx / cols, c = idx % cols;
      float* o = dst + r * dstStride + c;
#pragma unroll
      for (int j = 0; j < V; j++) o[j] = to_f32<KV>(e[j]);
    }
    return;
  }
  for (int e = threadIdx.x; e < n; e += blockDim.x) dst[(e / cols) * dstStride + e % cols] = to_f32<KV>(src[e]);
}

template <typename KV>
__device__ void paged_attention(void* out, int dto, const void* q, int dtq, const KV* kCache, const KV* vCache,
                                const int* queryStart, const int* seqLens, const int* blockTables, int maxBlocksPerSeq,
                                int blockSize, int numHeads, int numKVHeads, int headDim, float scale, int rowsPerTile,
                                int splitLen, int numSplits, long long numTokens, float* pm, float* pl, float* pacc) {
  DYNAMIC_SHARED(float, smem);
  const int R = rowsPerTile, hd = headDim, bs = blockSize;
  const int G = numHeads / numKVHeads;
  const int seq = blockIdx.y / numKVHeads, kvh = blockIdx.y % numKVHeads;
  const int q0 = queryStart[seq], qlen = queryStart[seq + 1] - q0;
  const int seqLen = seqLens[seq];
  const int firstRow = blockIdx.x * R;
  if (firstRow >= qlen * G) return;

  float* sq = smem;                   // R x (hd+1), scaled queries
  float* sk = sq + R * (hd + 1);      // bs x (hd+1)
  float* sv = sk + bs * (hd + 1);     // bs x hd
  float* sp = sv + bs * hd;           // R x bs, scores then probabilities
  float* sacc = sp + R * bs;          // R x hd
  float* sm = sacc + R * hd;          // R running max
  float* sl = sm + R;                 // R running sum
  float* salpha = sl + R;             // R rescale factor of this tile

  for (int e = threadIdx.x; e < R * hd; e += blockDim.x) {
    int r = e / hd, d = e % hd, row = firstRow + r;
    float v = 0.f;
    if (row < qlen * G) {
      int i = row / G, head = kvh * G + row % G;
      v = ld(q, dtq, ((long long)(q0 + i) * numHeads + head) * hd + d) * scale;
    }
    sq[r * (hd + 1) + d] = v;
    sacc[e] = 0.f;
  }
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    sm[r] = -INFINITY;
    sl[r] = 0.f;
  }

  // Key range of this CTA: its split, clipped by the causal limit of its
  // last valid row.
  int lastRow = min(firstRow + R, qlen * G) - 1;
  int maxPos = seqLen - qlen + lastRow / G;  // inclusive
  int kBegin = blockIdx.z * splitLen;
  int kEnd = min(min(kBegin + splitLen, seqLen), maxPos + 1);
  __syncthreads();

  for (int kb = kBegin - kBegin % bs; kb < kEnd; kb += bs) {
    int phys = blockTables[(long long)seq * maxBlocksPerSeq + kb / bs];
    long long off = ((long long)phys * numKVHeads + kvh) * bs * hd;
    load_tile<KV>(sk, hd + 1, kCache + off, bs, hd);
    load_tile<KV>(sv, hd, vCache + off, bs, hd);
    __syncthreads();
    for (int p = threadIdx.x; p < R * bs; p += blockDim.x) {
      int r = p / bs, t = p % bs, row = firstRow + r, kp = kb + t;
      float s = -INFINITY;
      if (row < qlen * G && kp >= kBegin && kp < kEnd && kp <= seqLen - qlen + row / G) {
        const float* a = sq + r * (hd + 1);
        const float* b = sk + t * (hd + 1);
        float acc = 0.f;
        for (int d = 0; d < hd; d++) acc = fmaf(a[d], b[d], acc);
        s = acc;
      }
      sp[p] = s;
    }
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int r = warp; r < R; r += nw) {
      float mx = -INFINITY;
      for (int t = lane; t < bs; t += 32) mx = fmaxf(mx, sp[r * bs + t]);
      mx = warp_max(mx);
      float mOld = sm[r], mNew = fmaxf(mOld, mx);
      float sum = 0.f;
      for (int t = lane; t < bs; t += 32) {
        float s = sp[r * bs + t];
        float pv = (s == -INFINITY) ? 0.f : expf(s - mNew);
        sp[r * bs + t] = pv;
        sum += pv;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        float alpha = (mOld == -INFINITY) ? 0.f : expf(mOld - mNew);
        salpha[r] = alpha;
        sl[r] = sl[r] * alpha + sum;
        sm[r] = mNew;
      }
    }
    __syncthreads();
    // Positions past kEnd have probability 0 but their V rows may hold
    // anything (NaN past the sequence's end): never touch them.
    const int tEnd = min(bs, kEnd - kb);
    for (int e = threadIdx.x; e < R * hd; e += blockDim.x) {
      int r = e / hd, d = e % hd;
      float a = sacc[e] * salpha[r];
      const float* pr = sp + r * bs;
      for (int t = 0; t < tEnd; t++) a = fmaf(pr[t], sv[t * hd + d], a);
      sacc[e] = a;
    }
    __syncthreads();
  }

  for (int e = threadIdx.x; e < R * hd; e += blockDim.x) {
    int r = e / hd, d = e % hd, row = firstRow + r;
    if (row >= qlen * G) continue;
    long long tok = q0 + row / G;
    int head = kvh * G + row % G;
    if (numSplits == 1) {
      float l = sl[r];
      st(out, dto, (tok * numHeads + head) * hd + d, l > 0.f ? sacc[e] / l : 0.f);
    } else {
      long long pi = ((long long)blockIdx.z * numTokens + tok) * numHeads + head;
      pacc[pi * hd + d] = sacc[e];
      if (d == 0) {
        pm[pi] = sm[r];
        pl[pi] = sl[r];
      }
    }
  }
}

#define PAGED_ATTENTION(NAME, KV)                                                                                          \
  extern "C" __global__ void __launch_bounds__(ATTN_THREADS) NAME(                                                       \
      void* out, int dto, const void* q, int dtq, const KV* kCache, const KV* vCache, const int* queryStart,              \
      const int* seqLens, const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads, int numKVHeads,      \
      int headDim, float scale, int rowsPerTile, int splitLen, int numSplits, long long numTokens, float* pm, float* pl, \
      float* pacc) {                                                                                                     \
    paged_attention<KV>(out, dto, q, dtq, kCache, vCache, queryStart, seqLens, blockTables, maxBlocksPerSeq, blockSize,  \
                        numHeads, numKVHeads, headDim, scale, rowsPerTile, splitLen, numSplits, numTokens, pm, pl,       \
                        pacc);                                                                                           \
  }

PAGED_ATTENTION(paged_attention_f32, float)
PAGED_ATTENTION(paged_attention_f16, __half)
PAGED_ATTENTION(paged_attention_bf16, __nv_bfloat16)

// paged_attention_combine merges numSplits partials of every (token, head):
// one block per pair, threads over headDim.
extern "C" __global__ void paged_attention_combine(void* out, int dto, const float* pm, const float* pl, const float* pacc,
                                                   int numSplits, long long numTokens, int numHeads, int headDim) {
  long long pair = blockIdx.x;  // token * numHeads + head
  long long stride = numTokens * numHeads;
  float M = -INFINITY;
  for (int z = 0; z < numSplits; z++) M = fmaxf(M, pm[z * stride + pair]);
  float L = 0.f;
  for (int z = 0; z < numSplits; z++) {
    float m = pm[z * stride + pair];
    if (m != -INFINITY) L += expf(m - M) * pl[z * stride + pair];
  }
  for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
    float a = 0.f;
    for (int z = 0; z < numSplits; z++) {
      float m = pm[z * stride + pair];
      if (m != -INFINITY) a += expf(m - M) * pacc[(z * stride + pair) * headDim + d];
    }
    st(out, dto, pair * headDim + d, L > 0.f ? a / L : 0.f);
  }
}
