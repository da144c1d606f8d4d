// logprobs.cu: raw logprobs (step 1 of runtime/sample): for each row with
// NumLogprobs >= 0, on the raw logits x,
//   lse = max + ln Σ exp(x_j - max)  (float64),
//   logprob(tok) = x_tok - lse, rank = #{j : x_j >= x_tok},
//   the top k tokens by descending x, ties by ascending id.
// The top k are found by k block-wide arg-max passes, each excluding the
// tokens canonically before the previous winner (no sort).
#include "common.cuh"

#define LP_THREADS 512
#define FULL 0xffffffffu

// after reports whether (v, i) is canonically after (pv, pi).
__device__ __forceinline__ bool after(float v, int i, float pv, int pi) { return v < pv || (v == pv && i > pi); }

__device__ __forceinline__ void take(float& bv, int& bi, float v, int i) {
  if (bi < 0 || v > bv || (v == bv && i < bi)) {
    bv = v;
    bi = i;
  }
}

// canon_max returns the canonically first token after (pv, pi) (pi < 0:
// no bound). Result on every thread; index -1 when none.
__device__ void canon_max(const float* x, int n, float pv, int pi, float* ov, int* oi) {
  __shared__ float sv[32];
  __shared__ int si[32];
  float bv = -INFINITY;
  int bi = -1;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = x[i];
    if (pi < 0 || after(v, i, pv, pi)) take(bv, bi, v, i);
  }
  for (int o = 16; o > 0; o >>= 1) {
    float v = __shfl_xor_sync(FULL, bv, o);
    int i = __shfl_xor_sync(FULL, bi, o);
    if (i >= 0) take(bv, bi, v, i);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  bv = -INFINITY;
  bi = -1;
  if (lane < nw && si[lane] >= 0) {
    bv = sv[lane];
    bi = si[lane];
  }
  for (int o = 16; o > 0; o >>= 1) {
    float v = __shfl_xor_sync(FULL, bv, o);
    int i = __shfl_xor_sync(FULL, bi, o);
    if (i >= 0) take(bv, bi, v, i);
  }
  *ov = bv;
  *oi = bi;
  __syncthreads();
}

// raw_logprobs: grid = rows. numLogprobs[r] < 0 skips the row. topIDs and
// topLPs are [rows][maxK]. status[r] = 1 on NaN/+Inf, 2 when all -Inf.
extern "C" __global__ void __launch_bounds__(LP_THREADS)
raw_logprobs(const float* logits, int vocab, const int* tokens, const int* numLogprobs, int maxK, float* outLP,
             int* outRank, int* topIDs, float* topLPs, int* status) {
  __shared__ int bad;
  __shared__ double sd[32];
  __shared__ int sr[32];
  const int row = blockIdx.x;
  const int k = numLogprobs[row];
  if (k < 0) return;
  const float* x = logits + (long long)row * vocab;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    float v = x[i];
    if (v != v || v == INFINITY) bad = 1;
  }
  __syncthreads();
  if (bad) {
    if (threadIdx.x == 0) status[row] = 1;
    return;
  }
  float mv;
  int mi;
  canon_max(x, vocab, 0.f, -1, &mv, &mi);
  if (mi < 0 || mv == -INFINITY) {
    if (threadIdx.x == 0) status[row] = 2;
    return;
  }
  const int tok = tokens[row];
  const float xt = x[tok];
  double sum = 0.0;
  int rank = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    float v = x[i];
    sum += exp((double)v - (double)mv);
    rank += v >= xt;
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(FULL, sum, o);
    rank += __shfl_xor_sync(FULL, rank, o);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) {
    sd[warp] = sum;
    sr[warp] = rank;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    int r = 0;
    for (int w = 0; w < nw; w++) {
      s += sd[w];
      r += sr[w];
    }
    sd[0] = s;
    sr[0] = r;
  }
  __syncthreads();
  const double lse = (double)mv + log(sd[0]);
  if (threadIdx.x == 0) {
    outLP[row] = (float)((double)xt - lse);
    outRank[row] = sr[0];
    status[row] = 0;
  }
  float pv = 0.f;
  int pi = -1;
  for (int j = 0; j < k && j < maxK; j++) {
    float v;
    int i;
    canon_max(x, vocab, pv, pi, &v, &i);
    if (i < 0) break;
    if (threadIdx.x == 0) {
      topIDs[(long long)row * maxK + j] = i;
      topLPs[(long long)row * maxK + j] = (float)((double)v - lse);
    }
    pv = v;
    pi = i;
  }
}
