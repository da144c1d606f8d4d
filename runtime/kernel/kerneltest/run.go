package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/vserve/vserve/runtime/kernel"
)

// Run checks every op of be against float64 references. Each op is a
// subtest; be stays open (the caller closes it).
func Run(t *testing.T, be kernel.Backend) {
	s := seed(t)
	tests := []struct {
		name string
		fn   func(*harness)
	}{
		{"Memory", testMemory},
		{"Embedding", testEmbedding},
		{"MatMul", testMatMul},
		{"AddBias", testAddBias},
		{"RMSNorm", testRMSNorm},
		{"Add", testAdd},
		{"SiLUMul", testSiLUMul},
		{"RoPE", testRoPE},
		{"ReshapeAndCache", testReshapeAndCache},
		{"PagedAttention", testPagedAttention},
		{"GatherRows", testGatherRows},
		{"Sample", testSample},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(newHarness(t, be, s+uint64(i)))
		})
	}
}

var weightTypes = []kernel.DType{kernel.F32, kernel.F16, kernel.BF16}

func testMemory(h *harness) {
	for _, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16} {
		v := h.normals(37, 1)
		b, want := h.upload(dt, v)
		if b.DType() != dt || b.Len() != 37 {
			h.tb.Errorf("%v buffer: DType %v Len %d", dt, b.DType(), b.Len())
		}
		h.check(dt.String()+" round trip", h.read(b), f64s(want), 0)
		sl := b.Slice(5, 10)
		if sl.Len() != 10 || sl.DType() != dt {
			h.tb.Errorf("%v Slice(5,10): Len %d DType %v", dt, sl.Len(), sl.DType())
		}
		h.check(dt.String()+" slice", h.read(sl), f64s(want[5:15]), 0)
		// Writing through a view changes the parent.
		patch := h.normals(3, 1)
		h.write(b.Slice(20, 3), patch)
		got := h.read(b)
		h.check(dt.String()+" write through view", got[20:23], f64s(round(dt, patch)), 0)
		h.check(dt.String()+" untouched after view write", got[:20], f64s(want[:20]), 0)
		h.be.Free(b)
	}
	ids := []int32{3, -1, 0, 1 << 30}
	ib := h.ints(ids)
	got := h.readInts(ib)
	for i := range ids {
		if got[i] != ids[i] {
			h.tb.Errorf("i32 round trip [%d]: got %d want %d", i, got[i], ids[i])
		}
	}
	if got := h.readInts(ib.Slice(1, 2)); got[0] != -1 || got[1] != 0 {
		h.tb.Errorf("i32 slice: got %v", got)
	}
	small := h.alloc(kernel.F32, 2)
	if err := h.be.Upload(small, []float32{1, 2, 3}); err == nil {
		h.tb.Errorf("Upload of 3 elements into 2: no error")
	}
	if err := h.be.Upload(small, []int32{1}); err == nil {
		h.tb.Errorf("Upload of []int32 into f32: no error")
	}
	if err := h.be.Download(make([]float32, 1), small); err == nil {
		h.tb.Errorf("Download of 2 elements into 1: no error")
	}
	if _, err := h.be.Alloc(kernel.F32, -1); err == nil {
		h.tb.Errorf("Alloc(-1): no error")
	}
	if z, err := h.be.Alloc(kernel.F32, 0); err != nil || z.Len() != 0 {
		h.tb.Errorf("Alloc(0): %v", err)
	}
}

func testEmbedding(h *harness) {
	for _, dt := range weightTypes {
		for _, sh := range []struct{ vocab, dim, tokens int }{{7, 8, 1}, {50, 33, 9}, {300, 64, 17}} {
			name := fmt.Sprintf("%v/%dx%d/%d", dt, sh.vocab, sh.dim, sh.tokens)
			table, tv := h.upload(dt, h.normals(sh.vocab*sh.dim, 1))
			ids := make([]int32, sh.tokens)
			for i := range ids {
				ids[i] = int32(h.rng.IntN(sh.vocab))
			}
			ids[0] = int32(sh.vocab - 1)
			out := h.poisoned(sh.tokens * sh.dim)
			h.ok("Embedding "+name, h.be.Embedding(out, table, h.ints(ids), sh.tokens, sh.dim))
			want := make([]float64, 0, sh.tokens*sh.dim)
			for _, id := range ids {
				want = append(want, f64s(tv[int(id)*sh.dim:int(id+1)*sh.dim])...)
			}
			h.check("Embedding "+name, h.read(out), want, h.tol(0.5))
		}
	}
}

// matmulShapes cover decode (m ≤ 16), prefill, odd sizes and k tails.
var matmulShapes = []struct{ m, n, k int }{
	{1, 1, 1}, {1, 7, 5}, {2, 9, 16}, {3, 13, 17}, {4, 4, 24}, {5, 33, 64}, {7, 21, 40},
	{16, 64, 96}, {17, 130, 257}, {50, 36, 72}, {1, 300, 288}, {1, 37, 96}, {6, 39, 48},
}

func testMatMul(h *harness) {
	for _, dt := range weightTypes {
		for _, sh := range matmulShapes {
			m, n, k := sh.m, sh.n, sh.k
			name := fmt.Sprintf("%v/%dx%dx%d", dt, m, n, k)
			x, xv := h.act(h.normals(m*k, 1))
			w, wv := h.upload(dt, h.normals(n*k, 1/math.Sqrt(float64(k))))
			out := h.poisoned(m * n)
			h.ok("MatMul "+name, h.be.MatMul(out, x, w, m, n, k))
			want := make([]float64, m*n)
			for i := range m {
				for j := range n {
					var s float64
					for kk := range k {
						s += float64(xv[i*k+kk]) * float64(wv[j*k+kk])
					}
					want[i*n+j] = s
				}
			}
			h.check("MatMul "+name, h.read(out), want, h.tol(10))
		}
	}
}

func testAddBias(h *harness) {
	for _, dt := range weightTypes {
		rows, dim := 5, 37
		x, xv := h.act(h.normals(rows*dim, 1))
		bias, bv := h.upload(dt, h.normals(dim, 1))
		h.ok("AddBias", h.be.AddBias(x, bias, rows, dim))
		want := make([]float64, rows*dim)
		for i := range want {
			want[i] = float64(xv[i]) + float64(bv[i%dim])
		}
		h.check("AddBias "+dt.String(), h.read(x), want, h.tol(1))
	}
}

func testRMSNorm(h *harness) {
	for _, dt := range weightTypes {
		for _, sh := range []struct{ rows, dim int }{{1, 8}, {3, 37}, {9, 288}, {2, 4096}} {
			name := fmt.Sprintf("%v/%dx%d", dt, sh.rows, sh.dim)
			x, xv := h.act(h.normals(sh.rows*sh.dim, 3))
			w, wv := h.upload(dt, h.normals(sh.dim, 1))
			const eps = 1e-5
			want := make([]float64, sh.rows*sh.dim)
			for r := range sh.rows {
				row := xv[r*sh.dim : (r+1)*sh.dim]
				var ss float64
				for _, v := range row {
					ss += float64(v) * float64(v)
				}
				inv := 1 / math.Sqrt(ss/float64(sh.dim)+eps)
				for i, v := range row {
					want[r*sh.dim+i] = float64(v) * inv * float64(wv[i])
				}
			}
			out := h.poisoned(sh.rows * sh.dim)
			h.ok("RMSNorm "+name, h.be.RMSNorm(out, x, w, sh.rows, sh.dim, eps))
			h.check("RMSNorm "+name, h.read(out), want, h.tol(4))
			// In place (out == x), as the forward pass may call it.
			h.ok("RMSNorm in place "+name, h.be.RMSNorm(x, x, w, sh.rows, sh.dim, eps))
			h.check("RMSNorm in place "+name, h.read(x), want, h.tol(4))
		}
	}
}

func testAdd(h *harness) {
	n := 1001
	a, av := h.act(h.normals(n, 1))
	b, bv := h.act(h.normals(n, 1))
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(av[i]) + float64(bv[i])
	}
	out := h.poisoned(n)
	h.ok("Add", h.be.Add(out, a, b, n))
	h.check("Add", h.read(out), want, h.tol(1))
	h.ok("Add in place", h.be.Add(a, a, b, n))
	h.check("Add in place", h.read(a), want, h.tol(1))
}

func testSiLUMul(h *harness) {
	rows, dim := 3, 333
	g, gv := h.act(h.normals(rows*dim, 4))
	u, uv := h.act(h.normals(rows*dim, 1))
	want := make([]float64, rows*dim)
	for i := range want {
		x := float64(gv[i])
		want[i] = x / (1 + math.Exp(-x)) * float64(uv[i])
	}
	out := h.poisoned(rows * dim)
	h.ok("SiLUMul", h.be.SiLUMul(out, g, u, rows, dim))
	h.check("SiLUMul", h.read(out), want, h.tol(2))
	h.ok("SiLUMul in place", h.be.SiLUMul(g, g, u, rows, dim))
	h.check("SiLUMul in place", h.read(g), want, h.tol(2))
}

func testRoPE(h *harness) {
	for _, sh := range []struct{ tokens, heads, kvHeads, headDim int }{
		{1, 1, 1, 8}, {5, 4, 2, 64}, {9, 8, 1, 128}, {3, 6, 6, 48},
	} {
		name := fmt.Sprintf("%dt/%dh/%dkv/%dd", sh.tokens, sh.heads, sh.kvHeads, sh.headDim)
		half := sh.headDim / 2
		inv := make([]float32, half)
		for i := range inv {
			inv[i] = float32(1 / math.Pow(10000, float64(2*i)/float64(sh.headDim)))
		}
		pos := make([]int32, sh.tokens)
		for i := range pos {
			pos[i] = int32(h.rng.IntN(2048))
		}
		pos[0] = 0
		q, qv := h.act(h.normals(sh.tokens*sh.heads*sh.headDim, 1))
		k, kv := h.act(h.normals(sh.tokens*sh.kvHeads*sh.headDim, 1))
		invB, _ := h.upload(kernel.F32, inv)
		h.ok("RoPE "+name, h.be.RoPE(q, k, h.ints(pos), invB, sh.tokens, sh.heads, sh.kvHeads, sh.headDim))
		h.check("RoPE q "+name, h.read(q), ropeRef(qv, pos, inv, sh.heads, sh.headDim), h.tol(2))
		h.check("RoPE k "+name, h.read(k), ropeRef(kv, pos, inv, sh.kvHeads, sh.headDim), h.tol(2))
	}
}

// ropeRef rotates x [tokens×heads×headDim] in float64, with the angle
// rounded to float32 as the contract specifies.
func ropeRef(x []float32, pos []int32, inv []float32, heads, headDim int) []float64 {
	half := headDim / 2
	out := f64s(x)
	for t, p := range pos {
		for hh := range heads {
			base := (t*heads + hh) * headDim
			for i := range half {
				s, c := math.Sincos(float64(float32(p) * inv[i]))
				a, b := float64(x[base+i]), float64(x[base+half+i])
				out[base+i] = a*c - b*s
				out[base+half+i] = b*c + a*s
			}
		}
	}
	return out
}

func testGatherRows(h *harness) {
	rows, dim := 11, 29
	x, xv := h.act(h.normals(rows*dim, 1))
	idx := []int32{10, 0, 3, 3, 7}
	out := h.poisoned(len(idx) * dim)
	h.ok("GatherRows", h.be.GatherRows(out, x, h.ints(idx), len(idx), dim))
	var want []float64
	for _, r := range idx {
		want = append(want, f64s(xv[int(r)*dim:int(r+1)*dim])...)
	}
	h.check("GatherRows", h.read(out), want, 0)
}
