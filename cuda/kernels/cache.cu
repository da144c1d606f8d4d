// cache.cu: reshape-and-cache: store this step's key/value rows into the
// paged KV cache, layout [numBlocks][numKVHeads][blockSize][headDim].
#include "common.cuh"

extern "C" __global__ void reshape_and_cache(const void* key, const void* value, int dtkv, void* kCache, void* vCache, int dtc,
                                             const int* slots, long long numTokens, int numKVHeads, int headDim, int blockSize) {
  long long perTok = (long long)numKVHeads * headDim;
  long long n = numTokens * perTok;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long t = i / perTok;
    int slot = slots[t];
    if (slot < 0) continue;
    int r = (int)(i % perTok);
    int h = r / headDim, d = r % headDim;
    long long block = slot / blockSize;
    int off = slot % blockSize;
    long long dst = ((block * numKVHeads + h) * blockSize + off) * headDim + d;
    st(kCache, dtc, dst, ld(key, dtkv, i));
    st(vCache, dtc, dst, ld(value, dtkv, i));
  }
}
