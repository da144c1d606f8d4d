// gather.cu: row gathers: token embedding and the logits gather.
#include "common.cuh"

// out[i] = table[idx[i]] for i < numRows, rows of dim elements. An index
// outside [0, tableRows) yields a zero row and sets *bad to 1 so the host
// can report it as an error.
extern "C" __global__ void gather_rows(void* out, int dto, const void* table, int dtt, const int* idx,
                                       long long numRows, int dim, long long tableRows, int* bad) {
  long long n = numRows * dim;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / dim;
    int d = (int)(i % dim);
    long long src = idx[r];
    if (src < 0 || src >= tableRows) {
      st(out, dto, i, 0.f);
      if (d == 0) *bad = 1;
      continue;
    }
    st(out, dto, i, ld(table, dtt, src * dim + d));
  }
}
