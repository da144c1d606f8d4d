package cpu_test

import (
	"fmt"

	"github.com/vserve/vserve/runtime/kernel"
	_ "github.com/vserve/vserve/runtime/kernel/cpu" // registers "cpu"
)

// Open the CPU backend by name and multiply two activation rows by a
// bf16 weight matrix stored [n×k], as a Linear layer does.
func Example() {
	be, err := kernel.Open("cpu", kernel.Options{Threads: 2})
	if err != nil {
		panic(err)
	}
	defer be.Close()

	const m, n, k = 2, 3, 4
	x, _ := be.Alloc(kernel.F32, m*k)
	w, _ := be.Alloc(kernel.BF16, n*k)
	out, _ := be.Alloc(kernel.F32, m*n)
	_ = be.Upload(x, []float32{1, 2, 3, 4, 1, 1, 1, 1})
	wv := []float32{1, 0, 0, 0, 0, 1, 0, 0, 0.5, 0.5, 0.5, 0.5}
	bits := make([]uint16, len(wv))
	for i, v := range wv {
		bits[i] = kernel.F32ToBF16(v)
	}
	_ = be.Upload(w, bits)
	if err := be.MatMul(out, x, w, m, n, k); err != nil {
		panic(err)
	}
	res := make([]float32, m*n)
	_ = be.Download(res, out)
	fmt.Println(res)
	// Output: [1 2 5 1 1 2]
}

// MapHost wraps bytes such as a memory-mapped safetensors tensor without
// copying them.
func ExampleBackend_MapHost() {
	be, _ := kernel.Open("cpu", kernel.Options{})
	defer be.Close()
	raw := []byte{0x80, 0x3f, 0x00, 0x40} // bf16 1.0 and 2.0, little-endian
	buf, err := be.(kernel.HostMapper).MapHost(kernel.BF16, raw)
	if err != nil {
		panic(err)
	}
	vals := make([]float32, buf.Len())
	_ = be.Download(vals, buf)
	fmt.Println(buf.DType(), vals)
	// Output: bf16 [1 2]
}
