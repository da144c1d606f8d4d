//go:build cudaemu && !cuda

package cuda

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/vserve/vserve/cuda/internal/emu"
)

// Name is the name the emulated backend registers under: the kernels run
// on the CPU through cuda/internal/emu (tests without a GPU only).
const Name = "cuda-emu"

// emuDriver runs the kernels synchronously on the CPU; "device" memory is
// host memory.
type emuDriver struct {
	live   map[uint64]int64
	events []time.Time
}

func newDriver() driver { return &emuDriver{live: map[uint64]int64{}} }

func (d *emuDriver) open(ordinal int, cfg Config) (deviceInfo, error) {
	if ordinal != 0 {
		return deviceInfo{}, fmt.Errorf("cuda-emu: device %d not present (1 device)", ordinal)
	}
	return deviceInfo{name: "CPU emulation", ccMajor: 9, ccMinor: 0, numSMs: 4, total: 8 << 30}, nil
}

func (d *emuDriver) close() error {
	for p := range d.live {
		emu.Free(p)
	}
	d.live = nil
	return nil
}

func (d *emuDriver) function(name string) (any, error) {
	if !emu.HasKernel(name) {
		return nil, fmt.Errorf("cuda-emu: no kernel %s", name)
	}
	return name, nil
}

func (d *emuDriver) launch(fn any, name string, grid, block dim3, smem int, args []uint64) error {
	if block.y != 1 || block.z != 1 {
		return errors.New("cuda-emu: 1-D blocks only")
	}
	return emu.Launch(fn.(string), [3]int{grid.x, grid.y, grid.z}, block.x, smem, args)
}

func (d *emuDriver) alloc(bytes int64) (uint64, error) {
	p := emu.Malloc(bytes)
	if p == 0 {
		return 0, errors.New("cuda-emu: out of memory")
	}
	d.live[p] = bytes
	return p, nil
}

func (d *emuDriver) free(p uint64) error {
	if _, ok := d.live[p]; !ok {
		return fmt.Errorf("cuda-emu: free of unknown pointer %#x", p)
	}
	delete(d.live, p)
	emu.Free(p)
	return nil
}

func (d *emuDriver) zero(p uint64, bytes int64) error { emu.Memset(p, 0, bytes); return nil }

func (d *emuDriver) htod(dst uint64, src unsafe.Pointer, bytes int64) error {
	emu.CopyIn(dst, src, bytes)
	return nil
}

func (d *emuDriver) dtoh(dst unsafe.Pointer, src uint64, bytes int64) error {
	emu.CopyOut(dst, src, bytes)
	return nil
}

func (d *emuDriver) sync() error { return nil }

func (d *emuDriver) memInfo() (int64, int64, error) { return 8 << 30, 8 << 30, nil }

func (d *emuDriver) gemm(g *gemmArgs) error {
	return emu.Gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.aType, g.lda, g.b, g.bType, g.ldb,
		g.beta, g.c, g.cType, g.ldc)
}

func (d *emuDriver) newEvent() (int, error) {
	d.events = append(d.events, time.Time{})
	return len(d.events) - 1, nil
}

func (d *emuDriver) record(ev int) error { d.events[ev] = time.Now(); return nil }

func (d *emuDriver) elapsed(from, to int) (float64, error) {
	return float64(d.events[to].Sub(d.events[from])) / float64(time.Millisecond), nil
}

func (d *emuDriver) blasVersion() (string, int) { return "emulated", 0 }
