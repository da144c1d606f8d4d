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

// ---- decode path: one query token per sequence ----
//
// paged_decode_<kv>_h<HD>_g<G> serves batches whose sequences all have
// query length 1 and is built for bandwidth (every K/V byte is read once):
//
//   - grid: x = partition of the context (flash-decoding split), y =
//     sequence * numKVHeads + kvHead; DECODE_WARPS warps per CTA;
//   - a warp handles all the query heads of its KV head (GQA group of up
//     to G, the template bound; groupSize is the real size), so each K/V
//     row is loaded once for every query head sharing it;
//   - a row of HD elements is read by HD/VEC lanes with 16-byte loads
//     straight into registers (VEC = 16 / sizeof(KV)); a warp load covers
//     TOK = 32 / (HD/VEC) consecutive positions, and each lane issues
//     DECODE_CHUNK K and V loads before using any of them;
//   - each lane group (the lanes of one position) keeps its own online
//     softmax state (fp32 max, sum, accumulator slice); groups are merged
//     with shuffles, warps through shared memory;
//   - with one partition the CTA writes the output, otherwise (max, sum,
//     unnormalised acc) partials in paged_attention_combine's layout.
//
// Positions at or past the sequence's end are never loaded (their slots
// may hold anything, NaN included).
#define DECODE_WARPS 4
#define DECODE_CHUNK 4

template <typename KV, int VEC>
__device__ __forceinline__ void unpack16(const uint4& raw, float* f) {
  KV e[VEC];
  memcpy(e, &raw, sizeof raw);
#pragma unroll
  for (int j = 0; j < VEC; j++) f[j] = to_f32<KV>(e[j]);
}

// merge_state folds softmax state (mo, lo, ao) into (m, l, a).
template <int VEC>
__device__ __forceinline__ void merge_state(float& m, float& l, float* a, float mo, float lo, const float* ao) {
  float M = fmaxf(m, mo);
  float x = (m == -INFINITY) ? 0.f : __expf(m - M);
  float y = (mo == -INFINITY) ? 0.f : __expf(mo - M);
  l = l * x + lo * y;
#pragma unroll
  for (int j = 0; j < VEC; j++) a[j] = a[j] * x + ao[j] * y;
  m = M;
}

template <typename KV, int HD, int G>
__device__ void paged_decode(void* out, int dto, const void* q, int dtq, const KV* kCache, const KV* vCache,
                             const int* queryStart, const int* seqLens, const int* blockTables, int maxBlocksPerSeq,
                             int blockSize, int numHeads, int numKVHeads, int groupSize, float scale, int partLen,
                             int numParts, long long numTokens, float* pm, float* pl, float* pacc) {
  constexpr int VEC = 16 / sizeof(KV);   // elements per 16-byte load
  constexpr int TPT = HD / VEC;          // lanes per position
  constexpr int TOK = 32 / TPT;          // positions per warp load
  constexpr int CH = DECODE_CHUNK;       // loads in flight per lane and tensor
  constexpr int STEP = TOK * CH;         // positions per warp step
  static_assert(HD % VEC == 0 && TPT >= 1 && TPT <= 32 && 32 % TPT == 0, "decode: head dim");
  __shared__ float sM[DECODE_WARPS][G], sL[DECODE_WARPS][G], sA[DECODE_WARPS][G][HD];

  const int seq = blockIdx.y / numKVHeads, kvh = blockIdx.y % numKVHeads, part = blockIdx.x;
  const long long q0 = queryStart[seq];
  if (queryStart[seq + 1] - q0 != 1) return;  // not a decode (whole CTA)
  const int seqLen = seqLens[seq];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = lane / TPT, d0 = (lane % TPT) * VEC;
  const int begin = part * partLen, end = min(begin + partLen, seqLen);

  float qr[G][VEC], m[G], l[G], acc[G][VEC];
#pragma unroll
  for (int g = 0; g < G; g++) {
    long long base = (q0 * numHeads + kvh * groupSize + g) * HD + d0;
#pragma unroll
    for (int j = 0; j < VEC; j++) {
      qr[g][j] = g < groupSize ? ld(q, dtq, base + j) * scale : 0.f;
      acc[g][j] = 0.f;
    }
    m[g] = -INFINITY;
    l[g] = 0.f;
  }

  const long long blockStride = (long long)numKVHeads * blockSize * HD;
  const long long headOff = (long long)kvh * blockSize * HD + d0;
  const int* table = blockTables + (long long)seq * maxBlocksPerSeq;
  for (int base = begin + warp * STEP; base < end; base += DECODE_WARPS * STEP) {  // warp-uniform
    // Block-table entries first (independent loads), then every K and V
    // load of the step, so that nothing waits between them.
    uint4 kraw[CH], vraw[CH];
    bool valid[CH];
    int phys[CH], slot[CH];
#pragma unroll
    for (int c = 0; c < CH; c++) {
      int p = base + c * TOK + grp;
      valid[c] = p < end;
      int b = p / blockSize;
      slot[c] = p - b * blockSize;
      phys[c] = valid[c] ? table[b] : 0;
    }
#pragma unroll
    for (int c = 0; c < CH; c++) {
      kraw[c] = vraw[c] = make_uint4(0, 0, 0, 0);
      if (valid[c]) {
        long long off = phys[c] * blockStride + headOff + (long long)slot[c] * HD;
        kraw[c] = load16_stream(kCache + off);
        vraw[c] = load16_stream(vCache + off);
      }
    }
    float s[CH][G];
#pragma unroll
    for (int c = 0; c < CH; c++) {
      float k[VEC];
      unpack16<KV, VEC>(kraw[c], k);
#pragma unroll
      for (int g = 0; g < G; g++) {
        float a = 0.f;
#pragma unroll
        for (int j = 0; j < VEC; j++) a = fmaf(qr[g][j], k[j], a);
#pragma unroll
        for (int o = TPT / 2; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        s[c][g] = valid[c] ? a : -INFINITY;
      }
    }
    float v[CH][VEC];
#pragma unroll
    for (int c = 0; c < CH; c++) unpack16<KV, VEC>(vraw[c], v[c]);
#pragma unroll
    for (int g = 0; g < G; g++) {
      float mx = s[0][g];
#pragma unroll
      for (int c = 1; c < CH; c++) mx = fmaxf(mx, s[c][g]);
      if (mx == -INFINITY) continue;  // no valid position for this lane group
      float mNew = fmaxf(m[g], mx);
      float alpha = (m[g] == -INFINITY) ? 0.f : __expf(m[g] - mNew);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < VEC; j++) acc[g][j] *= alpha;
#pragma unroll
      for (int c = 0; c < CH; c++) {
        float p = valid[c] ? __expf(s[c][g] - mNew) : 0.f;
        sum += p;
#pragma unroll
        for (int j = 0; j < VEC; j++) acc[g][j] = fmaf(p, v[c][j], acc[g][j]);
      }
      l[g] = l[g] * alpha + sum;
      m[g] = mNew;
    }
  }

  // Merge the lane groups of the warp (lanes holding the same dims).
#pragma unroll
  for (int o = TPT; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; g++) {
      float mo = __shfl_xor_sync(0xffffffffu, m[g], o), lo = __shfl_xor_sync(0xffffffffu, l[g], o), ao[VEC];
#pragma unroll
      for (int j = 0; j < VEC; j++) ao[j] = __shfl_xor_sync(0xffffffffu, acc[g][j], o);
      merge_state<VEC>(m[g], l[g], acc[g], mo, lo, ao);
    }
  }
  if (grp == 0) {
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
      for (int j = 0; j < VEC; j++) sA[warp][g][d0 + j] = acc[g][j];
      if (lane == 0) {
        sM[warp][g] = m[g];
        sL[warp][g] = l[g];
      }
    }
  }
  __syncthreads();
  // Merge the warps; one thread per (head of the group, dim).
  for (int e = threadIdx.x; e < groupSize * HD; e += blockDim.x) {
    int g = e / HD, d = e % HD;
    float M = -INFINITY;
    for (int w = 0; w < DECODE_WARPS; w++) M = fmaxf(M, sM[w][g]);
    float L = 0.f, A = 0.f;
    for (int w = 0; w < DECODE_WARPS; w++) {
      if (sM[w][g] == -INFINITY) continue;
      float x = __expf(sM[w][g] - M);
      L += x * sL[w][g];
      A += x * sA[w][g][d];
    }
    int head = kvh * groupSize + g;
    if (numParts == 1) {
      st(out, dto, (q0 * numHeads + head) * HD + d, L > 0.f ? A / L : 0.f);
    } else {
      long long pi = ((long long)part * numTokens + q0) * numHeads + head;
      pacc[pi * HD + d] = A;
      if (d == 0) {
        pm[pi] = M;
        pl[pi] = L;
      }
    }
  }
}

#define PAGED_DECODE(NAME, KV, HD, G)                                                                                    \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32) NAME(                                                 \
      void* out, int dto, const void* q, int dtq, const KV* kCache, const KV* vCache, const int* queryStart,             \
      const int* seqLens, const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads, int numKVHeads,     \
      int groupSize, float scale, int partLen, int numParts, long long numTokens, float* pm, float* pl, float* pacc) {  \
    paged_decode<KV, HD, G>(out, dto, q, dtq, kCache, vCache, queryStart, seqLens, blockTables, maxBlocksPerSeq,        \
                            blockSize, numHeads, numKVHeads, groupSize, scale, partLen, numParts, numTokens, pm, pl,    \
                            pacc);                                                                                      \
  }
#define PAGED_DECODE_G(KVNAME, KV, HD)                    \
  PAGED_DECODE(paged_decode_##KVNAME##_h##HD##_g1, KV, HD, 1) \
  PAGED_DECODE(paged_decode_##KVNAME##_h##HD##_g2, KV, HD, 2) \
  PAGED_DECODE(paged_decode_##KVNAME##_h##HD##_g4, KV, HD, 4) \
  PAGED_DECODE(paged_decode_##KVNAME##_h##HD##_g8, KV, HD, 8)

PAGED_DECODE_G(f32, float, 64)
PAGED_DECODE_G(f32, float, 128)
PAGED_DECODE_G(f16, __half, 64)
PAGED_DECODE_G(f16, __half, 128)
PAGED_DECODE_G(bf16, __nv_bfloat16, 64)
PAGED_DECODE_G(bf16, __nv_bfloat16, 128)
