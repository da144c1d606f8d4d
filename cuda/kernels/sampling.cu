// sampling.cu: one token per row on the device, with the semantics of
// runtime/sample (see its package documentation; steps 2 to 8 here, the
// raw logprobs of step 1 are in logprobs.cu):
//
//   logit bias, penalties (float32, vLLM's order) -> greedy argmax (ties to
//   the lowest id) or: min_p threshold, top_k (radix select of the k-th
//   largest kept value), top_p and the inverse-CDF draw in canonical order
//   (descending value, ties by ascending id) with float64 weights
//   exp((z - max)/T) and the counter-based uniform of runtime/sample/rng.go.
//
// No full sort of the vocabulary: when at most CAND_MAX tokens survive
// min_p/top_k they are compacted into shared memory and sorted there;
// otherwise top_p and the draw are answered by a radix descent over the
// order-preserving bits of the logits, with float64 mass histograms.
//
// One block of SAMPLE_THREADS threads per row.
#include "common.cuh"

#define SAMPLE_THREADS 1024
#define CAND_MAX 2048
#define FULL 0xffffffffu

#define STATUS_OK 0
#define STATUS_NONFINITE 1
#define STATUS_ALL_MASKED 2

// SampleRow mirrors cuda.sampleRow (64 bytes, natural alignment).
struct SampleRow {
  unsigned long long seed;
  unsigned long long offset;
  float temperature, top_p, min_p, rep, pres, freq;
  int top_k, num_logprobs;
  int pen_begin, pen_end;    // [begin,end) of pen: (token id, output count)
  int bias_begin, bias_end;  // [begin,end) of bias: (token id, float bits)
};

// ---- random numbers: runtime/sample/rng.go, bit for bit ----

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z;
}

__device__ __forceinline__ double uniform01(unsigned long long seed, unsigned long long offset) {
  const unsigned long long gamma = 0x9E3779B97F4A7C15ull;
  unsigned long long key = mix64(seed + gamma);
  unsigned long long bits = mix64(key + (offset + 1) * gamma);
  return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

// ---- order-preserving keys: larger float <=> larger key ----

__device__ __forceinline__ unsigned int fkey(float f) {
  unsigned int b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float keyf(unsigned int k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// ---- block reductions ----

struct ArgMax {
  float v;
  int i;
};

__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  if (b.i < 0) return a;
  if (a.i < 0) return b;
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

// block_argmax returns the largest value with the lowest index (i = -1
// when every value is -Inf) to every thread; *nan is set when a NaN was seen.
__device__ ArgMax block_argmax(const float* z, int n, int* nanFlag) {
  __shared__ float sv[32];
  __shared__ int si[32];
  ArgMax best = {-INFINITY, -1};
  bool nan = false;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = z[i];
    if (v != v) nan = true;
    else if (v > best.v) best = ArgMax{v, i};  // ids grow per thread: first is lowest
  }
  if (nan) *nanFlag = 1;
  for (int o = 16; o > 0; o >>= 1) {
    ArgMax other = {__shfl_xor_sync(FULL, best.v, o), __shfl_xor_sync(FULL, best.i, o)};
    best = better(best, other);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sv[warp] = best.v;
    si[warp] = best.i;
  }
  __syncthreads();
  best = lane < nw ? ArgMax{sv[lane], si[lane]} : ArgMax{-INFINITY, -1};
  for (int o = 16; o > 0; o >>= 1) {
    ArgMax other = {__shfl_xor_sync(FULL, best.v, o), __shfl_xor_sync(FULL, best.i, o)};
    best = better(best, other);
  }
  __syncthreads();
  return best;
}

__device__ double block_sum_d(double v) {
  __shared__ double s[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  v = lane < nw ? s[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
  __syncthreads();
  return v;
}

__device__ int block_sum_i(int v) {
  __shared__ int s[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  v = lane < nw ? s[lane] : 0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
  __syncthreads();
  return v;
}

// ---- candidates ----

// Cands describes the tokens taking part in a crossing query: z >= thr,
// and, when limited, canonically no later than (limKey, limID). Weights
// are 1 (count mode) or exp((z - zmax) * invT) (mass mode).
struct Cands {
  const float* z;
  int n;
  float thr;
  bool limited;
  unsigned int limKey;
  int limID;
  bool mass;
  double zmax, invT;
};

__device__ __forceinline__ bool is_cand(const Cands& c, int i, float v, unsigned int key) {
  if (!(v >= c.thr)) return false;
  if (c.limited && (key < c.limKey || (key == c.limKey && i > c.limID))) return false;
  return true;
}

__device__ __forceinline__ double weight(const Cands& c, float v) {
  return c.mass ? exp(((double)v - c.zmax) * c.invT) : 1.0;
}

__device__ __forceinline__ bool passes(double cum, double target, bool inclusive) {
  return cum > target || (inclusive && cum == target);
}

// Crossing is the answer of a crossing query: the first candidate in
// canonical order at which the running weight passes the target.
struct Crossing {
  unsigned int key;
  int id;
  double before;  // weight of the candidates canonically before it
  double w;       // its own weight
};

// radix_crossing answers a crossing query over the whole row without
// sorting: four passes over 8-bit digits of the key (most significant
// first) with per-digit weight histograms, then a scan by ascending id of
// the candidates holding the crossing key. If rounding leaves the total
// short of the target, the canonically last candidate is returned.
__device__ Crossing radix_crossing(const Cands& c, double target, bool inclusive) {
  __shared__ double hist[256];
  __shared__ int cnt[256];
  __shared__ unsigned int sPrefix;
  __shared__ double sAcc;
  __shared__ int sShort, sTieCount;
  __shared__ int sID;
  __shared__ double sW, sBefore;
  if (threadIdx.x == 0) {
    sPrefix = 0;
    sAcc = 0.0;
    sShort = 0;
  }
  unsigned int mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) {
      hist[b] = 0.0;
      cnt[b] = 0;
    }
    __syncthreads();
    unsigned int prefix = sPrefix;
    for (int base = 0; base < c.n; base += blockDim.x) {
      int i = base + threadIdx.x;
      bool in = false;
      unsigned int bin = 0;
      double w = 0.0;
      if (i < c.n) {
        float v = c.z[i];
        unsigned int key = fkey(v);
        if (is_cand(c, i, v, key) && (key & mask) == prefix) {
          in = true;
          bin = (key >> shift) & 255u;
          w = weight(c, v);
        }
      }
      unsigned int act = __ballot_sync(FULL, in);
      if (in) {
        unsigned int grp = __match_any_sync(act, bin);
        double s = 0.0;
        for (unsigned int m = grp; m; m &= m - 1) s += __shfl_sync(grp, w, __ffs(m) - 1);
        if ((threadIdx.x & 31) == __ffs(grp) - 1) {
          atomicAdd(&hist[bin], s);
          atomicAdd(&cnt[bin], __popc(grp));
        }
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // lane l owns bins 255-8l down to 248-8l.
      int lane = threadIdx.x;
      double local = 0.0;
      for (int j = 0; j < 8; j++) local += hist[255 - 8 * lane - j];
      double excl = local;
      for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(FULL, excl, o);
        if (lane >= o) excl += t;
      }
      excl -= local;
      double acc = sAcc;
      double run = acc + excl;
      int found = -1;
      double foundBefore = 0.0;
      for (int j = 0; j < 8; j++) {
        int b = 255 - 8 * lane - j;
        if (cnt[b] > 0 && passes(run + hist[b], target, inclusive)) {
          found = b;
          foundBefore = run;
          break;
        }
        run += hist[b];
      }
      unsigned int hit = __ballot_sync(FULL, found >= 0);
      if (hit) {
        int src = __ffs(hit) - 1;
        int d = __shfl_sync(FULL, found, src);
        double bf = __shfl_sync(FULL, foundBefore, src);
        if (lane == 0) {
          sPrefix |= (unsigned int)d << shift;
          sAcc = bf;
          sTieCount = cnt[d];
        }
      } else {
        // Short through rounding: take the lowest non-empty bin.
        int low = -1;
        double above = 0.0;
        if (lane == 0) {
          double tot = 0.0;
          for (int b = 255; b >= 0; b--) {
            if (cnt[b] > 0) {
              low = b;
              above = tot;
            }
            tot += hist[b];
          }
          if (low >= 0) {
            sPrefix |= (unsigned int)low << shift;
            sAcc = acc + above;
            sTieCount = cnt[low];
          }
          sShort = 1;
        }
      }
    }
    mask |= 255u << shift;
    __syncthreads();
  }
  // Tie resolution among candidates whose key is sPrefix, by ascending id.
  unsigned int K = sPrefix;
  if (threadIdx.x == 0) {
    sID = -1;
    sW = 0.0;
    sBefore = sAcc;
  }
  __syncthreads();
  if (sTieCount == 1) {
    for (int i = threadIdx.x; i < c.n; i += blockDim.x) {
      float v = c.z[i];
      unsigned int key = fkey(v);
      if (key == K && is_cand(c, i, v, key)) {
        sID = i;
        sW = weight(c, v);
      }
    }
    __syncthreads();
  } else {
    __shared__ double wsum[32];
    const int none = 0x7fffffff;
    if (threadIdx.x == 0) sID = none;
    __syncthreads();
    double acc = sAcc;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int base = 0; base < c.n; base += blockDim.x) {
      int i = base + threadIdx.x;
      double w = 0.0;
      bool in = false;
      if (i < c.n) {
        float v = c.z[i];
        unsigned int key = fkey(v);
        if (key == K && is_cand(c, i, v, key)) {
          in = true;
          w = weight(c, v);
        }
      }
      double incl = w;
      for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(FULL, incl, o);
        if (lane >= o) incl += t;
      }
      if (lane == 31) wsum[warp] = incl;
      __syncthreads();
      double off = 0.0, chunk = 0.0;
      for (int k = 0; k < nw; k++) {
        if (k < warp) off += wsum[k];
        chunk += wsum[k];
      }
      incl += off + acc;
      bool hitHere = in && !sShort && passes(incl, target, inclusive);
      // the first hit in id order wins: smallest i
      if (hitHere) atomicMin(&sID, i);
      __syncthreads();
      if (in && i == sID) {
        sW = w;
        sBefore = incl - w;
      }
      __syncthreads();
      if (sID != none) break;
      acc += chunk;
      __syncthreads();
    }
    __syncthreads();
    if (sID == none) {
      // Short (or rounding inside the tie group): the canonically last one,
      // the largest id with this key.
      __shared__ int lastID;
      if (threadIdx.x == 0) lastID = -1;
      __syncthreads();
      for (int i = threadIdx.x; i < c.n; i += blockDim.x) {
        float v = c.z[i];
        unsigned int key = fkey(v);
        if (key == K && is_cand(c, i, v, key)) atomicMax(&lastID, i);
      }
      __syncthreads();
      if (threadIdx.x == 0) sID = -1;
      if (threadIdx.x == 0 && lastID >= 0) {
        float v = c.z[lastID];
        sID = lastID;
        sW = weight(c, v);
        sBefore = acc - sW;
      }
      __syncthreads();
    }
  }
  Crossing r = {K, sID, sBefore, sW};
  __syncthreads();
  return r;
}

// ---- shared-memory path for few candidates ----

__device__ __forceinline__ bool canon_before(unsigned int ka, int ia, unsigned int kb, int ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// sort_cands sorts n <= CAND_MAX records canonically (bitonic, padded to a
// power of two with records that sort last).
__device__ void sort_cands(unsigned int* key, int* id, double* w, int n) {
  int N = 1;
  while (N < n) N <<= 1;
  for (int i = n + threadIdx.x; i < N; i += blockDim.x) {
    key[i] = 0;
    id[i] = 0x7fffffff;
    w[i] = 0.0;
  }
  __syncthreads();
  for (int k = 2; k <= N; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < N / 2; t += blockDim.x) {
        int a = 2 * j * (t / j) + (t % j), b = a + j;
        bool up = (a & k) == 0;
        bool sw = up ? canon_before(key[b], id[b], key[a], id[a]) : canon_before(key[a], id[a], key[b], id[b]);
        if (sw) {
          unsigned int tk = key[a]; key[a] = key[b]; key[b] = tk;
          int ti = id[a]; id[a] = id[b]; id[b] = ti;
          double tw = w[a]; w[a] = w[b]; w[b] = tw;
        }
      }
      __syncthreads();
    }
  }
}

// scan_inclusive replaces w[0..n) by its inclusive prefix sums (n <= 2*blockDim).
__device__ void scan_inclusive(double* w, int n) {
  __shared__ double wsum[32];
  int t = threadIdx.x, lane = t & 31, warp = t >> 5, nw = blockDim.x >> 5;
  double a = 2 * t < n ? w[2 * t] : 0.0;
  double b = 2 * t + 1 < n ? w[2 * t + 1] : 0.0;
  double s = a + b, incl = s;
  for (int o = 1; o < 32; o <<= 1) {
    double x = __shfl_up_sync(FULL, incl, o);
    if (lane >= o) incl += x;
  }
  if (lane == 31) wsum[warp] = incl;
  __syncthreads();
  double off = 0.0;
  for (int k = 0; k < warp && k < nw; k++) off += wsum[k];
  double excl = off + incl - s;
  if (2 * t < n) w[2 * t] = excl + a;
  if (2 * t + 1 < n) w[2 * t + 1] = excl + a + b;
  __syncthreads();
}

// first_passing returns the first index in [0,n) whose cumulative weight
// passes target, or n-1 when none does (rounding).
__device__ int first_passing(const double* cum, int n, double target, bool inclusive) {
  int lo = 0, hi = n;  // first index in [lo,hi) that passes; cum is nondecreasing
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (passes(cum[mid], target, inclusive)) hi = mid;
    else lo = mid + 1;
  }
  return lo < n ? lo : n - 1;
}

// ---- the kernel ----

__device__ float min_p_threshold(float zmax, double temp, float minP) {
  const float lowest = -3.402823466e38f;
  if (minP <= 0.f) return lowest;
  double t64 = (double)zmax + temp * log((double)minP);
  if (t64 <= (double)lowest) return lowest;
  float t32 = __double2float_rn(t64);
  if ((double)t32 < t64) t32 = nextafterf(t32, INFINITY);
  return t32;
}

// modify writes bias and penalties into work (a copy of the row) when the
// row needs them, following runtime/sample: z = x + bias, then for every
// token seen in the prompt or output the repetition penalty, then for
// output tokens z -= freq*count and z -= presence. Returns the row to use.
__device__ const float* modify(const float* x, float* work, int vocab, const SampleRow& p, const int2* pen, const int2* bias) {
  bool any = p.bias_end > p.bias_begin || p.pen_end > p.pen_begin;
  if (!any) return x;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) work[i] = x[i];
  __syncthreads();
  for (int e = p.bias_begin + threadIdx.x; e < p.bias_end; e += blockDim.x) {
    int2 b = bias[e];
    work[b.x] = __fadd_rn(work[b.x], __int_as_float(b.y));
  }
  __syncthreads();
  for (int e = p.pen_begin + threadIdx.x; e < p.pen_end; e += blockDim.x) {
    int2 t = pen[e];
    float v = work[t.x];
    if (p.rep != 1.f) v = v > 0.f ? __fdiv_rn(v, p.rep) : __fmul_rn(v, p.rep);
    if (t.y > 0) {
      v = __fsub_rn(v, __fmul_rn(p.freq, (float)t.y));
      v = __fsub_rn(v, p.pres);
    }
    work[t.x] = v;
  }
  __syncthreads();
  return work;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_rows(const float* logits, float* work, int vocab, const SampleRow* rows, const int2* pen, const int2* bias,
            int* outTok, int* status) {
  __shared__ unsigned int ckey[CAND_MAX];
  __shared__ int cid[CAND_MAX];
  __shared__ double cw[CAND_MAX];
  __shared__ int nanFlag, ncand;
  const int row = blockIdx.x;
  const SampleRow p = rows[row];
  const float* x = logits + (long long)row * vocab;
  const float* z = modify(x, work + (long long)row * vocab, vocab, p, pen, bias);
  if (threadIdx.x == 0) {
    nanFlag = 0;
    ncand = 0;
  }
  __syncthreads();
  ArgMax best = block_argmax(z, vocab, &nanFlag);
  __syncthreads();
  if (nanFlag || best.v == INFINITY) {
    if (threadIdx.x == 0) status[row] = STATUS_NONFINITE, outTok[row] = 0;
    return;
  }
  if (best.i < 0) {
    if (threadIdx.x == 0) status[row] = STATUS_ALL_MASKED, outTok[row] = 0;
    return;
  }
  if (p.temperature < 1e-5f) {
    if (threadIdx.x == 0) status[row] = STATUS_OK, outTok[row] = best.i;
    return;
  }
  const float zmax = best.v;
  const double temp = (double)p.temperature;
  Cands c = {z, vocab, min_p_threshold(zmax, temp, p.min_p), false, 0u, 0, false, (double)zmax, 1.0 / temp};

  // top_k: the k-th largest kept value (counting repeats).
  if (p.top_k > 0 && p.top_k < vocab) {
    int kept = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) kept += z[i] >= c.thr;
    kept = block_sum_i(kept);
    if (kept >= p.top_k) {
      Crossing k = radix_crossing(c, (double)p.top_k, true);
      float kth = keyf(k.key);
      if (kth > c.thr) c.thr = kth;
    }
  }
  c.mass = true;

  // Compact the candidates when few enough (one shared atomic per warp).
  for (int base = 0; base < vocab; base += blockDim.x) {
    int i = base + threadIdx.x;
    float v = i < vocab ? z[i] : -INFINITY;
    bool keep = i < vocab && v >= c.thr;
    unsigned int m = __ballot_sync(FULL, keep);
    int lane = threadIdx.x & 31;
    int first = 0;
    if (lane == 0 && m) first = atomicAdd(&ncand, __popc(m));
    first = __shfl_sync(FULL, first, 0);
    if (keep) {
      int slot = first + __popc(m & ((1u << lane) - 1));
      if (slot < CAND_MAX) {
        ckey[slot] = fkey(v);
        cid[slot] = i;
        cw[slot] = weight(c, v);
      }
    }
  }
  __syncthreads();
  const int n = ncand;
  if (n == 0) {  // unreachable: the maximum always survives
    if (threadIdx.x == 0) status[row] = STATUS_ALL_MASKED, outTok[row] = 0;
    return;
  }
  const double u = uniform01(p.seed, p.offset);
  if (n <= CAND_MAX) {
    sort_cands(ckey, cid, cw, n);
    scan_inclusive(cw, n);
    if (threadIdx.x == 0) {
      int last = n - 1;
      if (n > 1 && p.top_p < 1.f) last = first_passing(cw, n, (double)p.top_p * cw[n - 1], true);
      int pos = last;
      if (last > 0) pos = first_passing(cw, last + 1, u * cw[last], false);
      outTok[row] = cid[pos];
      status[row] = STATUS_OK;
    }
    return;
  }

  // Many candidates: radix crossing queries over the row.
  double total = 0.0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    float v = z[i];
    if (v >= c.thr) total += weight(c, v);
  }
  total = block_sum_d(total);
  if (p.top_p < 1.f) {
    Crossing tp = radix_crossing(c, (double)p.top_p * total, true);
    c.limited = true;
    c.limKey = tp.key;
    c.limID = tp.id;
    total = tp.before + tp.w;
  }
  Crossing d = radix_crossing(c, u * total, false);
  if (threadIdx.x == 0) {
    outTok[row] = d.id;
    status[row] = STATUS_OK;
  }
}
