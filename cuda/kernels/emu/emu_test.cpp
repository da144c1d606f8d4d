// emu_test.cpp: runs vserve's CUDA kernels on the CPU through emu.h and
// checks them against straightforward references (double precision,
// sorting where the kernels must not). It proves the kernels' logic and
// indexing, not their speed or their behaviour on real hardware.
//
//   bash cuda/kernels/emu/run.sh
#include "../common.cuh"
#include "../activation.cu"
#include "../attention.cu"
#include "../cache.cu"
#include "../elementwise.cu"
#include "../gather.cu"
#include "../logprobs.cu"
#include "../norm.cu"
#include "../rope.cu"
#include "../sampling.cu"

#include <cstdio>
#include <random>
#include <string>

static int failures = 0;
static std::mt19937_64 rng(20261128);

#define CHECK(cond, ...)                  \
  do {                                    \
    if (!(cond)) {                        \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);           \
      std::printf("\n");                  \
      failures++;                         \
    }                                     \
  } while (0)

static std::vector<float> normals(size_t n, double sd) {
  std::normal_distribution<double> d(0, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = (float)d(rng);
  return v;
}

static double norm_err(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

static dim3 d3(unsigned x, unsigned y = 1, unsigned z = 1) { dim3 d; d.x = x; d.y = y; d.z = z; return d; }

// ---- elementwise families ----

static void test_elementwise() {
  int rows = 3, dim = 100;
  int n = rows * dim;
  auto a = normals(n, 1), b = normals(n, 1), w = normals(dim, 1);
  std::vector<float> out(n, NAN);
  emu_launch(d3(2), d3(64), [&] { add(out.data(), DT_F32, a.data(), DT_F32, b.data(), DT_F32, n); });
  std::vector<double> want(n);
  for (int i = 0; i < n; i++) want[i] = (double)a[i] + b[i];
  CHECK(norm_err(out, want) < 1e-7, "add");

  std::vector<float> x = a;
  emu_launch(d3(3), d3(32), [&] { add_bias(x.data(), DT_F32, w.data(), DT_F32, rows, dim); });
  for (int i = 0; i < n; i++) want[i] = (double)a[i] + w[i % dim];
  CHECK(norm_err(x, want) < 1e-7, "add_bias");

  emu_launch(d3(2), d3(64), [&] { silu_mul(out.data(), DT_F32, a.data(), DT_F32, b.data(), DT_F32, n); });
  for (int i = 0; i < n; i++) want[i] = a[i] / (1 + std::exp(-(double)a[i])) * b[i];
  CHECK(norm_err(out, want) < 1e-6, "silu_mul");

  // f32 -> bf16 -> f32 through convert.
  std::vector<uint16_t> h(n);
  emu_launch(d3(1), d3(128), [&] { convert(h.data(), DT_BF16, a.data(), DT_F32, n); });
  emu_launch(d3(1), d3(128), [&] { convert(out.data(), DT_F32, h.data(), DT_BF16, n); });
  for (int i = 0; i < n; i++) want[i] = a[i];
  double e = norm_err(out, want);
  CHECK(e < 4e-3 && e > 0, "convert bf16 round trip error %g", e);

  // RMSNorm, in place, and the fused residual form.
  x = a;
  emu_launch(d3(rows), d3(64), [&] { rmsnorm(x.data(), DT_F32, x.data(), DT_F32, w.data(), DT_F32, dim, 1e-5f); });
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int d = 0; d < dim; d++) ss += (double)a[r * dim + d] * a[r * dim + d];
    double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int d = 0; d < dim; d++) want[r * dim + d] = a[r * dim + d] * inv * w[d];
  }
  CHECK(norm_err(x, want) < 1e-6, "rmsnorm in place: %g", norm_err(x, want));
  x = a;
  std::vector<float> res = b;
  emu_launch(d3(rows), d3(128), [&] { fused_add_rmsnorm(x.data(), DT_F32, res.data(), DT_F32, w.data(), DT_F32, dim, 1e-5f); });
  std::vector<double> wantRes(n);
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int d = 0; d < dim; d++) {
      float s = a[r * dim + d] + b[r * dim + d];
      wantRes[r * dim + d] = s;
      ss += (double)s * s;
    }
    double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int d = 0; d < dim; d++) want[r * dim + d] = wantRes[r * dim + d] * inv * w[d];
  }
  CHECK(norm_err(res, wantRes) < 1e-7, "fused residual");
  CHECK(norm_err(x, want) < 1e-6, "fused norm");
}

static void test_rope_gather_cache() {
  int T = 3, H = 4, KVH = 2, hd = 16, half = hd / 2;
  auto q = normals(T * H * hd, 1), k = normals(T * KVH * hd, 1);
  std::vector<int> pos = {0, 7, 1000};
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) inv[i] = (float)(1 / std::pow(10000.0, 2.0 * i / hd));
  auto q0 = q, k0 = k;
  emu_launch(d3(2), d3(32), [&] { rope(q.data(), DT_F32, k.data(), DT_F32, pos.data(), inv.data(), T, H, KVH, hd); });
  auto ref = [&](const std::vector<float>& x, int heads) {
    std::vector<double> o(x.begin(), x.end());
    for (int t = 0; t < T; t++)
      for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++) {
          double ang = (float)pos[t] * inv[i];
          double s = std::sin(ang), c = std::cos(ang);
          size_t b = ((size_t)t * heads + h) * hd;
          o[b + i] = x[b + i] * c - x[b + half + i] * s;
          o[b + half + i] = x[b + half + i] * c + x[b + i] * s;
        }
    return o;
  };
  CHECK(norm_err(q, ref(q0, H)) < 1e-6, "rope q %g", norm_err(q, ref(q0, H)));
  CHECK(norm_err(k, ref(k0, KVH)) < 1e-6, "rope k");

  // gather with an out-of-range index sets the flag.
  int rows = 5, dim = 7;
  auto table = normals(rows * dim, 1);
  std::vector<int> idx = {4, 0, 2, 5};
  std::vector<float> out(idx.size() * dim, NAN);
  int bad = 0;
  emu_launch(d3(1), d3(32), [&] { gather_rows(out.data(), DT_F32, table.data(), DT_F32, idx.data(), 4, dim, rows, &bad); });
  bool ok = true;
  for (int i = 0; i < 3; i++)
    for (int d = 0; d < dim; d++) ok = ok && out[i * dim + d] == table[idx[i] * dim + d];
  for (int d = 0; d < dim; d++) ok = ok && out[3 * dim + d] == 0.f;
  CHECK(ok && bad == 1, "gather_rows (bad=%d)", bad);

  // reshape_and_cache into bf16 caches, slot -1 skipped.
  int bs = 4, blocks = 3, kvh = 2, d = 8, nt = 3;
  auto key = normals(nt * kvh * d, 1), val = normals(nt * kvh * d, 1);
  std::vector<uint16_t> kc(blocks * kvh * bs * d, 0xffff), vc(blocks * kvh * bs * d, 0xffff);
  std::vector<int> slots = {5, -1, 11};
  emu_launch(d3(1), d3(64), [&] {
    reshape_and_cache(key.data(), val.data(), DT_F32, kc.data(), vc.data(), DT_BF16, slots.data(), nt, kvh, d, bs);
  });
  ok = true;
  for (int t = 0; t < nt; t++) {
    if (slots[t] < 0) continue;
    int b = slots[t] / bs, off = slots[t] % bs;
    for (int h = 0; h < kvh; h++)
      for (int j = 0; j < d; j++) {
        size_t dst = (((size_t)b * kvh + h) * bs + off) * d + j, src = ((size_t)t * kvh + h) * d + j;
        ok = ok && kc[dst] == __float2bfloat16_rn(key[src]).x && vc[dst] == __float2bfloat16_rn(val[src]).x;
      }
  }
  size_t untouched = 0;
  for (auto v : kc) untouched += v == 0xffff;
  CHECK(ok && untouched == kc.size() - 2 * kvh * d, "reshape_and_cache");
}

// ---- paged attention ----

struct Seq { int ctx, q; };

static void test_attention(int H, int KVH, int hd, int bs, std::vector<Seq> seqs, int rowsPerTile, int splitLen) {
  int G = H / KVH, maxBlocks = 0, tokens = 0, maxQ = 0, maxL = 0;
  std::vector<int> qs = {0}, lens, tables;
  for (auto s : seqs) {
    int l = s.ctx + s.q;
    maxBlocks = std::max(maxBlocks, (l + bs - 1) / bs);
    tokens += s.q;
    qs.push_back(tokens);
    lens.push_back(l);
    maxQ = std::max(maxQ, s.q);
    maxL = std::max(maxL, l);
  }
  int numBlocks = 1 + (int)seqs.size() * maxBlocks + 3;
  std::vector<int> perm(numBlocks - 1);
  for (int i = 0; i < numBlocks - 1; i++) perm[i] = i + 1;
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t row = (size_t)KVH * hd;
  std::vector<float> kc(numBlocks * bs * row, NAN), vc(numBlocks * bs * row, NAN);
  auto kv = normals(numBlocks * bs * row * 2, 1);
  int used = 0;
  for (size_t s = 0; s < seqs.size(); s++) {
    int nb = (lens[s] + bs - 1) / bs;
    for (int j = 0; j < maxBlocks; j++) tables.push_back(j < nb ? perm[used + j] : 0);
    for (int p = 0; p < lens[s]; p++) {
      int b = tables[s * maxBlocks + p / bs], off = p % bs;
      for (int h = 0; h < KVH; h++)
        for (int d = 0; d < hd; d++) {
          size_t i = (((size_t)b * KVH + h) * bs + off) * hd + d;
          kc[i] = kv[i];
          vc[i] = kv[kc.size() + i];
        }
    }
    used += nb;
  }
  auto q = normals((size_t)tokens * H * hd, 1);
  float scale = 1 / std::sqrt((float)hd);
  int numSplits = (maxL + splitLen - 1) / splitLen;
  std::vector<float> out((size_t)tokens * H * hd, NAN);
  std::vector<float> part((size_t)numSplits * tokens * H * (hd + 2), NAN);
  float *pm = part.data(), *pl = pm + (size_t)numSplits * tokens * H, *pacc = pl + (size_t)numSplits * tokens * H;
  int tiles = (maxQ * G + rowsPerTile - 1) / rowsPerTile;
  emu_launch(d3(tiles, seqs.size() * KVH, numSplits), d3(128), [&] {
    paged_attention_f32(out.data(), DT_F32, q.data(), DT_F32, kc.data(), vc.data(), qs.data(), lens.data(), tables.data(),
                        maxBlocks, bs, H, KVH, hd, scale, rowsPerTile, splitLen, numSplits, tokens, pm, pl, pacc);
  });
  if (numSplits > 1)
    emu_launch(d3(tokens * H), d3(64), [&] { paged_attention_combine(out.data(), DT_F32, pm, pl, pacc, numSplits, tokens, H, hd); });
  std::vector<double> want(out.size());
  for (size_t s = 0; s < seqs.size(); s++)
    for (int i = 0; i < seqs[s].q; i++) {
      int t = qs[s] + i, posn = lens[s] - seqs[s].q + i;
      for (int h = 0; h < H; h++) {
        int kh = h / G;
        std::vector<double> sc(posn + 1);
        double mx = -1e300;
        for (int p = 0; p <= posn; p++) {
          int b = tables[s * maxBlocks + p / bs], off = p % bs;
          double dot = 0;
          for (int d = 0; d < hd; d++) dot += (double)q[((size_t)t * H + h) * hd + d] * scale * kc[(((size_t)b * KVH + kh) * bs + off) * hd + d];
          sc[p] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0;
        for (auto& v : sc) sum += (v = std::exp(v - mx));
        for (int d = 0; d < hd; d++) {
          double a = 0;
          for (int p = 0; p <= posn; p++) {
            int b = tables[s * maxBlocks + p / bs], off = p % bs;
            a += sc[p] * vc[(((size_t)b * KVH + kh) * bs + off) * hd + d];
          }
          want[((size_t)t * H + h) * hd + d] = a / sum;
        }
      }
    }
  double e = norm_err(out, want);
  CHECK(e < 2e-6, "attention H%d KVH%d hd%d bs%d R%d split%d: normalised error %g", H, KVH, hd, bs, rowsPerTile, splitLen, e);
}

// ---- paged attention, decode path ----

template <typename KV> static KV kv_from(float v);
template <> float kv_from<float>(float v) { return v; }
template <> __half kv_from<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 kv_from<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

using DecodeFn = void (*)(void*, int, const void*, int, const void*, const void*, const int*, const int*, const int*, int,
                          int, int, int, int, float, int, int, long long, float*, float*, float*);

// test_decode runs a decode kernel (G: its group bound) on single-token
// sequences of the given context lengths (the query is the last
// position) and checks it against a double-precision reference. Block 0
// is the null block (padding in the tables) and, like every slot past a
// sequence's end, holds NaN; blocks are shuffled. partLen 0: one partition.
template <typename KV, int HD, int G>
static void test_decode(const char* name, int H, int KVH, int bs, std::vector<int> lens, int partLen) {
  DecodeFn fn = [](void* out, int dto, const void* q, int dtq, const void* k, const void* v, const int* qs, const int* sl,
                   const int* bt, int mb, int bs, int h, int kvh, int gs, float sc, int pl, int np, long long nt, float* pm,
                   float* plp, float* pacc) {
    paged_decode<KV, HD, G>(out, dto, q, dtq, (const KV*)k, (const KV*)v, qs, sl, bt, mb, bs, h, kvh, gs, sc, pl, np, nt, pm,
                            plp, pacc);
  };
  int S = lens.size(), maxL = *std::max_element(lens.begin(), lens.end()), maxBlocks = (maxL + bs - 1) / bs;
  int numBlocks = 1 + S * maxBlocks;
  std::vector<int> perm(numBlocks - 1), qs(S + 1), tables(S * maxBlocks, 0);
  for (int i = 0; i < numBlocks - 1; i++) perm[i] = i + 1;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int s = 0; s <= S; s++) qs[s] = s;
  size_t cacheN = (size_t)numBlocks * KVH * bs * HD;
  KV nan = kv_from<KV>(NAN);
  std::vector<KV> kc(cacheN, nan), vc(cacheN, nan);
  std::vector<float> kf(cacheN, NAN), vf(cacheN, NAN);  // the stored values as floats
  int used = 0;
  for (int s = 0; s < S; s++) {
    int nb = (lens[s] + bs - 1) / bs;
    for (int j = 0; j < nb; j++) tables[s * maxBlocks + j] = perm[used + j];
    used += nb;
    for (int p = 0; p < lens[s]; p++)
      for (int h = 0; h < KVH; h++) {
        size_t i = (((size_t)tables[s * maxBlocks + p / bs] * KVH + h) * bs + p % bs) * HD;
        auto kr = normals(HD, 1), vr = normals(HD, 1);
        for (int d = 0; d < HD; d++) {
          kc[i + d] = kv_from<KV>(kr[d]);
          vc[i + d] = kv_from<KV>(vr[d]);
          kf[i + d] = to_f32<KV>(kc[i + d]);
          vf[i + d] = to_f32<KV>(vc[i + d]);
        }
      }
  }
  auto q = normals((size_t)S * H * HD, 1);
  float scale = 1 / std::sqrt((float)HD);
  if (partLen <= 0) partLen = maxL;
  int numParts = (maxL + partLen - 1) / partLen;
  std::vector<float> out((size_t)S * H * HD, NAN), part((size_t)numParts * S * H * (HD + 2), NAN);
  float *pm = part.data(), *pl = pm + (size_t)numParts * S * H, *pacc = pl + (size_t)numParts * S * H;
  emu_launch(d3(numParts, S * KVH), d3(DECODE_WARPS * 32), [&] {
    fn(out.data(), DT_F32, q.data(), DT_F32, kc.data(), vc.data(), qs.data(), lens.data(), tables.data(), maxBlocks, bs, H,
       KVH, H / KVH, scale, partLen, numParts, S, pm, pl, pacc);
  });
  if (numParts > 1)
    emu_launch(d3(S * H), d3(64), [&] { paged_attention_combine(out.data(), DT_F32, pm, pl, pacc, numParts, S, H, HD); });
  std::vector<double> want(out.size());
  int G_ = H / KVH;
  for (int s = 0; s < S; s++)
    for (int h = 0; h < H; h++) {
      int kh = h / G_;
      std::vector<double> sc(lens[s]);
      double mx = -1e300, sum = 0;
      auto at = [&](int p, int d) { return (((size_t)tables[s * maxBlocks + p / bs] * KVH + kh) * bs + p % bs) * HD + d; };
      for (int p = 0; p < lens[s]; p++) {
        double dot = 0;
        for (int d = 0; d < HD; d++) dot += (double)q[((size_t)s * H + h) * HD + d] * scale * kf[at(p, d)];
        mx = std::max(mx, sc[p] = dot);
      }
      for (auto& v : sc) sum += (v = std::exp(v - mx));
      for (int d = 0; d < HD; d++) {
        double a = 0;
        for (int p = 0; p < lens[s]; p++) a += sc[p] * vf[at(p, d)];
        want[((size_t)s * H + h) * HD + d] = a / sum;
      }
    }
  double e = norm_err(out, want);
  CHECK(e < 2e-6, "decode %s H%d KVH%d hd%d bs%d part%d x%d: normalised error %g", name, H, KVH, HD, bs, partLen, numParts, e);
}

static void test_decodes() {
  // GQA 1/4/8 and groups below the kernel's bound (3 of 4, 6 of 8), head
  // dims 64/128, blocks 16/32, f32/f16/bf16 caches, contexts that are not
  // multiples of the partition (or of the warp step), length 1, one or
  // several partitions (empty ones for the shorter sequences).
  test_decode<float, 64, 1>("f32", 4, 4, 16, {1, 15, 16, 100}, 0);
  test_decode<__nv_bfloat16, 128, 4>("bf16", 32, 8, 16, {300, 5, 129}, 128);
  test_decode<__half, 128, 8>("f16", 16, 2, 32, {77, 1, 200}, 64);
  test_decode<__nv_bfloat16, 64, 8>("bf16", 8, 1, 32, {250, 33}, 96);
  test_decode<float, 128, 4>("f32", 6, 2, 16, {65, 190}, 0);
  test_decode<__half, 64, 8>("f16", 12, 2, 16, {143, 17, 64}, 64);
  test_decode<__nv_bfloat16, 128, 1>("bf16", 2, 2, 32, {500}, 192);
}

// ---- sampling: the runtime/sample specification, by sorting ----

struct Params {
  unsigned long long seed = 1, offset = 0;
  float temp = 0, top_p = 1, min_p = 0, rep = 1, pres = 0, freq = 0;
  int top_k = 0, nlp = -1;
};

// uniform_ref is runtime/sample/rng.go's specification, written out again
// here so that the kernel's version is checked, not reused.
static double uniform_ref(uint64_t seed, uint64_t offset) {
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const uint64_t gamma = 0x9E3779B97F4A7C15ull;
  uint64_t key = mix(seed + gamma);
  return (double)(mix(key + (offset + 1) * gamma) >> 11) / 9007199254740992.0;
}

static int sample_ref(std::vector<float> z, const Params& p, const std::vector<std::pair<int, int>>& pen,
                      const std::vector<std::pair<int, float>>& bias) {
  for (auto [id, v] : bias) z[id] += v;
  for (auto [id, cnt] : pen) {
    float v = z[id];
    if (p.rep != 1) v = v > 0 ? v / p.rep : v * p.rep;
    if (cnt > 0) {
      v -= p.freq * (float)cnt;
      v -= p.pres;
    }
    z[id] = v;
  }
  int best = 0;
  for (int i = 1; i < (int)z.size(); i++)
    if (z[i] > z[best]) best = i;
  if (p.temp < 1e-5f) return best;
  float zmax = z[best];
  double T = p.temp;
  float thr = -3.402823466e38f;
  if (p.min_p > 0) {
    double t64 = (double)zmax + T * std::log((double)p.min_p);
    if (t64 > thr) {
      thr = (float)t64;
      if ((double)thr < t64) thr = std::nextafter(thr, INFINITY);
    }
  }
  std::vector<int> c;
  for (int i = 0; i < (int)z.size(); i++)
    if (z[i] >= thr) c.push_back(i);
  std::stable_sort(c.begin(), c.end(), [&](int a, int b) { return z[a] > z[b]; });
  if (p.top_k > 0 && p.top_k < (int)z.size() && (int)c.size() >= p.top_k) {
    float kth = z[c[p.top_k - 1]];
    while (!c.empty() && z[c.back()] < kth) c.pop_back();
  }
  std::vector<double> w(c.size()), cum(c.size());
  double total = 0;
  for (size_t i = 0; i < c.size(); i++) {
    w[i] = std::exp(((double)z[c[i]] - zmax) / T);
    total += w[i];
    cum[i] = total;
  }
  size_t last = c.size() - 1;
  if (c.size() > 1 && p.top_p < 1) {
    double target = (double)p.top_p * total;
    for (size_t i = 0; i < c.size(); i++)
      if (cum[i] >= target) { last = i; break; }
  }
  if (last == 0) return c[0];
  double t = uniform_ref(p.seed, p.offset) * cum[last];
  for (size_t i = 0; i <= last; i++)
    if (cum[i] > t) return c[i];
  return c[last];
}

static void test_sampling(int vocab, Params base, bool penalties, int rows, const char* name, bool ties = false) {
  std::vector<float> logits = normals((size_t)rows * vocab, 3);
  if (ties)  // few distinct values: crossings inside groups of equal logits
    for (auto& v : logits) v = std::round(v);
  std::vector<SampleRow> sr(rows);
  std::vector<int2> pen, bias;
  std::vector<std::vector<std::pair<int, int>>> penRef(rows);
  std::vector<std::vector<std::pair<int, float>>> biasRef(rows);
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  for (int r = 0; r < rows; r++) {
    Params p = base;
    p.seed = 1000 + r * 7;
    p.offset = r;
    SampleRow& s = sr[r];
    s.seed = p.seed; s.offset = p.offset; s.temperature = p.temp; s.top_p = p.top_p; s.min_p = p.min_p;
    s.rep = p.rep; s.pres = p.pres; s.freq = p.freq; s.top_k = p.top_k; s.num_logprobs = p.nlp;
    s.bias_begin = bias.size();
    s.pen_begin = pen.size();
    if (penalties) {
      int b = tok(rng);
      bias.push_back(int2{b, __float_as_int(2.5f)});
      biasRef[r].push_back({b, 2.5f});
      int t1 = tok(rng), t2 = tok(rng);
      if (t2 == t1) t2 = (t1 + 1) % vocab;
      pen.push_back(int2{t1, 2});
      pen.push_back(int2{t2, 0});
      penRef[r] = {{t1, 2}, {t2, 0}};
    }
    s.bias_end = bias.size();
    s.pen_end = pen.size();
  }
  if (pen.empty()) pen.push_back(int2{0, 0});
  if (bias.empty()) bias.push_back(int2{0, 0});
  std::vector<float> work((size_t)rows * vocab);
  std::vector<int> outTok(rows, -1), status(rows, -1);
  emu_launch(d3(rows), d3(SAMPLE_THREADS), [&] {
    sample_rows(logits.data(), work.data(), vocab, sr.data(), pen.data(), bias.data(), outTok.data(), status.data());
  });
  int mismatch = 0;
  for (int r = 0; r < rows; r++) {
    Params p = base;
    p.seed = sr[r].seed;
    p.offset = sr[r].offset;
    std::vector<float> z(logits.begin() + (size_t)r * vocab, logits.begin() + (size_t)(r + 1) * vocab);
    int want = sample_ref(z, p, penRef[r], biasRef[r]);
    if (status[r] != 0 || outTok[r] != want) {
      mismatch++;
      std::printf("  %s row %d: token %d status %d, reference %d\n", name, r, outTok[r], status[r], want);
    }
  }
  CHECK(mismatch == 0, "sampling %s: %d of %d rows differ", name, mismatch, rows);

  // Raw logprobs of the sampled tokens with the top 4.
  int K = 4;
  std::vector<int> nlp(rows, K), rank(rows), lpStatus(rows, -1), topIDs(rows * K);
  std::vector<float> lp(rows), topLPs(rows * K);
  emu_launch(d3(rows), d3(LP_THREADS), [&] {
    raw_logprobs(logits.data(), vocab, outTok.data(), nlp.data(), K, lp.data(), rank.data(), topIDs.data(), topLPs.data(), lpStatus.data());
  });
  for (int r = 0; r < rows; r++) {
    const float* x = logits.data() + (size_t)r * vocab;
    double mx = *std::max_element(x, x + vocab), s = 0;
    int rk = 0;
    for (int i = 0; i < vocab; i++) {
      s += std::exp((double)x[i] - mx);
      rk += x[i] >= x[outTok[r]];
    }
    double lse = mx + std::log(s);
    std::vector<int> ids(vocab);
    for (int i = 0; i < vocab; i++) ids[i] = i;
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return x[a] > x[b]; });
    bool topOK = true;
    for (int j = 0; j < K; j++) topOK = topOK && topIDs[r * K + j] == ids[j] && std::fabs(topLPs[r * K + j] - (x[ids[j]] - lse)) < 1e-5;
    CHECK(lpStatus[r] == 0 && rank[r] == rk && std::fabs(lp[r] - (x[outTok[r]] - lse)) < 1e-5 && topOK,
          "logprobs %s row %d: status %d rank %d/%d lp %g/%g top %d", name, r, lpStatus[r], rank[r], rk, lp[r], x[outTok[r]] - lse, topOK);
  }
}

static void test_sampling_errors() {
  int vocab = 100;
  std::vector<float> logits(2 * vocab, 0.f);
  logits[3] = NAN;
  for (int i = vocab; i < 2 * vocab; i++) logits[i] = -INFINITY;
  std::vector<SampleRow> sr(2);
  for (auto& s : sr) { s = SampleRow{}; s.top_p = 1; s.rep = 1; s.temperature = 1; s.num_logprobs = -1; }
  int2 dummy{0, 0};
  std::vector<int> outTok(2), status(2);
  emu_launch(d3(2), d3(SAMPLE_THREADS), [&] {
    sample_rows(logits.data(), nullptr, vocab, sr.data(), &dummy, &dummy, outTok.data(), status.data());
  });
  CHECK(status[0] == STATUS_NONFINITE && status[1] == STATUS_ALL_MASKED, "sampling status %d %d", status[0], status[1]);
}

int main() {
  test_elementwise();
  test_rope_gather_cache();
  // Attention: decodes and prefills, GQA 1/2/4/8, holes in the block
  // tables, NaN everywhere outside the valid positions, with and without
  // KV splits, several rows per CTA.
  test_attention(4, 4, 64, 16, {{0, 1}, {15, 1}, {16, 1}, {100, 1}}, 1, 112);
  test_attention(8, 2, 128, 16, {{0, 37}, {0, 1}}, 16, 48);
  test_attention(8, 1, 8, 32, {{20, 13}, {0, 5}, {70, 1}, {33, 1}}, 8, 96);
  test_attention(6, 3, 64, 16, {{31, 1}, {17, 16}, {0, 3}, {47, 2}, {64, 17}}, 4, 32);
  test_attention(32, 8, 128, 16, {{300, 1}, {5, 1}}, 4, 64);
  test_attention(16, 2, 64, 32, {{90, 7}}, 2, 1024);
  test_decodes();
  // Sampling: greedy, the shared-memory path (few candidates) and the
  // radix path (more than CAND_MAX candidates), with penalties and bias.
  Params greedy;
  greedy.nlp = 4;
  test_sampling(500, greedy, true, 3, "greedy");
  Params topk;
  topk.temp = 0.8f; topk.top_k = 50; topk.top_p = 0.9f;
  test_sampling(3000, topk, true, 4, "topk50-topp0.9");
  Params plain;
  plain.temp = 1.0f;
  test_sampling(3000, plain, false, 4, "plain (radix)");
  Params topp;
  topp.temp = 0.7f; topp.top_p = 0.8f;
  test_sampling(2600, topp, true, 4, "topp0.8 (radix)");
  Params minp;
  minp.temp = 1.3f; minp.min_p = 0.05f; minp.rep = 1.3f; minp.pres = 0.5f; minp.freq = 0.25f;
  test_sampling(3000, minp, true, 4, "minp+penalties");
  Params bigk;
  bigk.temp = 1.0f; bigk.top_k = 2500; bigk.top_p = 0.95f;
  test_sampling(3000, bigk, false, 3, "topk2500-topp0.95 (radix)");
  Params tied;
  tied.temp = 1.0f; tied.top_p = 0.9f;
  test_sampling(3000, tied, false, 4, "ties topp0.9 (radix)", true);
  Params tiedk;
  tiedk.temp = 0.9f; tiedk.top_k = 20; tiedk.top_p = 0.95f;
  test_sampling(1500, tiedk, false, 4, "ties topk20-topp0.95", true);
  test_sampling_errors();
  if (failures) {
    std::printf("emu: %d failures\n", failures);
    return 1;
  }
  std::printf("emu: all kernel checks passed\n");
  return 0;
}
