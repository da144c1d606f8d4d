//go:build cuda

package cuda

import (
	"embed"
	"errors"
	"fmt"
	"path"
	"strings"
	"unsafe"

	"gorgonia.org/cu"
)

// Name is the name the backend registers under.
const Name = "cuda"

//go:embed kernels/*.fatbin
var kernelImages embed.FS

// cuDriver is the real device: gorgonia.org/cu for the driver API and
// cuBLAS through cgo.go.
type cuDriver struct {
	device cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mods   []cu.Module
	fns    map[string]cu.Function
	blas   *cublas
	events []cu.Event
}

func newDriver() driver { return &cuDriver{} }

func (d *cuDriver) open(ordinal int, cfg Config) (info deviceInfo, err error) {
	n, err := cu.NumDevices()
	if err != nil {
		return info, fmt.Errorf("cuda: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return info, fmt.Errorf("cuda: device %d not present (%d devices)", ordinal, n)
	}
	if d.device, err = cu.GetDevice(ordinal); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", ordinal, err)
	}
	if d.ctx, err = d.device.RetainPrimaryCtx(); err != nil {
		return info, fmt.Errorf("cuda: retain primary context: %w", err)
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err = cu.SetCurrentContext(d.ctx); err != nil {
		return info, fmt.Errorf("cuda: set context: %w", err)
	}
	if info.name, err = d.device.Name(); err != nil {
		return info, fmt.Errorf("cuda: device name: %w", err)
	}
	attrs, err := d.device.Attributes(cu.MultiprocessorCount, cu.ComputeCapabilityMajor, cu.ComputeCapabilityMinor)
	if err != nil {
		return info, fmt.Errorf("cuda: device attributes: %w", err)
	}
	info.numSMs, info.ccMajor, info.ccMinor = attrs[0], attrs[1], attrs[2]
	if info.ccMajor < 8 {
		return info, fmt.Errorf("cuda: %s has compute capability %d.%d; vserve needs 8.0 (Ampere) or newer", info.name, info.ccMajor, info.ccMinor)
	}
	if _, info.total, err = cu.MemInfo(); err != nil {
		return info, fmt.Errorf("cuda: memory info: %w", err)
	}
	// A blocking stream: it synchronises with the legacy default stream,
	// on which the synchronous copies run, so copies and kernels are
	// ordered without further events.
	if d.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		return info, fmt.Errorf("cuda: stream: %w", err)
	}
	if err = d.loadModules(); err != nil {
		return info, err
	}
	if d.blas, err = loadCublas(cfg.CublasDir, unsafe.Pointer(d.stream.C())); err != nil {
		return info, err
	}
	return info, nil
}

// loadModules loads every embedded fat binary; the driver picks the cubin
// of the device's architecture or JIT-compiles the PTX.
func (d *cuDriver) loadModules() error {
	entries, err := kernelImages.ReadDir("kernels")
	if err != nil {
		return fmt.Errorf("cuda: embedded kernels: %w", err)
	}
	d.fns = map[string]cu.Function{}
	for _, e := range entries {
		img, err := kernelImages.ReadFile(path.Join("kernels", e.Name()))
		if err != nil {
			return fmt.Errorf("cuda: embedded kernels: %w", err)
		}
		mod, err := cu.LoadData(string(img))
		if err != nil {
			return fmt.Errorf("cuda: load module %s: %w", e.Name(), err)
		}
		d.mods = append(d.mods, mod)
		for _, name := range kernelNames[strings.TrimSuffix(e.Name(), ".fatbin")] {
			f, err := mod.Function(name)
			if err != nil {
				return fmt.Errorf("cuda: module %s: function %s: %w", e.Name(), name, err)
			}
			d.fns[name] = f
		}
	}
	return nil
}

func (d *cuDriver) close() error {
	var errs []error
	var zero cu.Stream
	if d.stream != zero {
		errs = append(errs, d.stream.Synchronize())
	}
	if d.blas != nil {
		d.blas.close()
		d.blas = nil
	}
	for i := range d.events {
		errs = append(errs, cu.DestroyEvent(&d.events[i]))
	}
	d.events = nil
	for _, m := range d.mods {
		errs = append(errs, m.Unload())
	}
	d.mods = nil
	if d.stream != zero {
		errs = append(errs, d.stream.Destroy())
	}
	errs = append(errs, d.device.ReleasePrimaryCtx())
	return errors.Join(errs...)
}

func (d *cuDriver) function(name string) (any, error) {
	f, ok := d.fns[name]
	if !ok {
		return nil, fmt.Errorf("cuda: kernel %s missing from the embedded images (run go generate ./cuda/...)", name)
	}
	return f, nil
}

// launch passes every argument in its own 8-byte slot: gorgonia.org/cu's
// Launch copies 8 bytes from each pointer it is given.
func (d *cuDriver) launch(fn any, name string, grid, block dim3, smem int, args []uint64) error {
	ptrs := make([]unsafe.Pointer, len(args))
	for i := range args {
		ptrs[i] = unsafe.Pointer(&args[i])
	}
	return fn.(cu.Function).Launch(grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, d.stream, ptrs)
}

func (d *cuDriver) alloc(bytes int64) (uint64, error) {
	p, err := cu.MemAlloc(bytes)
	return uint64(p), err
}

func (d *cuDriver) free(p uint64) error { return cu.MemFree(cu.DevicePtr(p)) }

func (d *cuDriver) zero(p uint64, bytes int64) error { return cu.MemsetD8(cu.DevicePtr(p), 0, bytes) }

// htod is a synchronous copy on the legacy stream: ordered after the work
// of our (blocking) stream and before what is queued after it.
func (d *cuDriver) htod(dst uint64, src unsafe.Pointer, bytes int64) error {
	return cu.MemcpyHtoD(cu.DevicePtr(dst), src, bytes)
}

func (d *cuDriver) dtoh(dst unsafe.Pointer, src uint64, bytes int64) error {
	return cu.MemcpyDtoH(dst, cu.DevicePtr(src), bytes)
}

func (d *cuDriver) sync() error { return d.stream.Synchronize() }

func (d *cuDriver) memInfo() (int64, int64, error) { return cu.MemInfo() }

func (d *cuDriver) gemm(g *gemmArgs) error { return d.blas.gemm(g) }

func (d *cuDriver) newEvent() (int, error) {
	ev, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		return 0, err
	}
	d.events = append(d.events, ev)
	return len(d.events) - 1, nil
}

func (d *cuDriver) record(ev int) error { return d.events[ev].Record(d.stream) }

func (d *cuDriver) elapsed(from, to int) (float64, error) {
	if err := d.events[to].Synchronize(); err != nil {
		return 0, err
	}
	return d.events[from].Elapsed(d.events[to])
}

func (d *cuDriver) blasVersion() (string, int) { return d.blas.soname, d.blas.version }
