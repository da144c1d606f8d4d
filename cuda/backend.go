//go:build cuda

package cuda

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/vserve/vserve/runtime/kernel"
)

// Name is the name the backend registers under.
const Name = "cuda"

// DTypeEnv selects the compute dtype of backends opened through the
// registry: "bf16" (default), "f16" or "f32".
const DTypeEnv = "VSERVE_CUDA_DTYPE"

func init() {
	kernel.Register(Name, func(o kernel.Options) (kernel.Backend, error) {
		cfg, err := ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		return New(o, cfg)
	})
}

//go:embed kernels/*.fatbin
var kernelImages embed.FS

// Config is the CUDA-specific configuration of a backend.
type Config struct {
	// ComputeDType is the dtype of activations and of the KV cache: BF16
	// (the default when zero-valued through ConfigFromEnv), F16 or F32.
	// Arithmetic is fp32 in every case.
	ComputeDType kernel.DType
	// CublasDir is a directory holding libcublas.so.N (empty: the
	// VSERVE_CUBLAS_DIR environment variable, then the loader's path).
	CublasDir string
}

// ConfigFromEnv reads VSERVE_CUDA_DTYPE and VSERVE_CUBLAS_DIR.
func ConfigFromEnv() (Config, error) {
	cfg := Config{ComputeDType: kernel.BF16, CublasDir: os.Getenv(CublasDirEnv)}
	switch v := strings.ToLower(os.Getenv(DTypeEnv)); v {
	case "", "bf16", "bfloat16":
	case "f16", "fp16", "float16", "half":
		cfg.ComputeDType = kernel.F16
	case "f32", "fp32", "float32":
		cfg.ComputeDType = kernel.F32
	default:
		return cfg, fmt.Errorf("cuda: %s=%q: want bf16, f16 or f32", DTypeEnv, v)
	}
	return cfg, nil
}

// Backend is the CUDA backend. Its methods may be called from any
// goroutine; driver work runs on one device goroutine in call order.
type Backend struct {
	dev     *device
	ordinal int
	compute kernel.DType
	name    string // device name
	ccMajor int
	ccMinor int
	numSMs  int
	total   int64

	ctx    cu.CUContext
	device cu.Device
	stream cu.Stream
	mods   []cu.Module
	fn     kernels
	blas   *cublas

	alloc allocator
	flags uint64 // device int32[1]: set by gathers on an index out of range

	mu     sync.Mutex
	events []cu.Event
	free   []int
}

var (
	_ kernel.Backend = (*Backend)(nil)
	_ EventTimer     = (*Backend)(nil)
)

// New opens device opts.Device: it retains the primary context on a
// locked device goroutine, creates a stream, loads the embedded kernel
// images and cuBLAS.
func New(opts kernel.Options, cfg Config) (*Backend, error) {
	switch cfg.ComputeDType {
	case kernel.F32, kernel.F16, kernel.BF16:
	default:
		return nil, fmt.Errorf("cuda: compute dtype %v: want f32, f16 or bf16", cfg.ComputeDType)
	}
	be := &Backend{ordinal: opts.Device, compute: cfg.ComputeDType}
	dev, err := startDevice(func() error { return be.setup(cfg) })
	if err != nil {
		return nil, err
	}
	be.dev = dev
	be.alloc.be = be
	return be, nil
}

// setup runs on the device goroutine.
func (be *Backend) setup(cfg Config) (err error) {
	n, err := cu.NumDevices()
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if be.ordinal < 0 || be.ordinal >= n {
		return fmt.Errorf("cuda: device %d not present (%d devices)", be.ordinal, n)
	}
	if be.device, err = cu.GetDevice(be.ordinal); err != nil {
		return fmt.Errorf("cuda: device %d: %w", be.ordinal, err)
	}
	if be.ctx, err = be.device.RetainPrimaryCtx(); err != nil {
		return fmt.Errorf("cuda: retain primary context: %w", err)
	}
	defer func() {
		if err != nil {
			be.teardown()
		}
	}()
	if err = cu.SetCurrentContext(be.ctx); err != nil {
		return fmt.Errorf("cuda: set context: %w", err)
	}
	if err = be.queryDevice(); err != nil {
		return err
	}
	// A blocking stream: it synchronises with the legacy default stream,
	// on which the synchronous copies run, so copies and kernels are
	// ordered without further events.
	if be.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		return fmt.Errorf("cuda: stream: %w", err)
	}
	if err = be.loadModules(); err != nil {
		return err
	}
	if be.blas, err = loadCublas(cfg.CublasDir, unsafe.Pointer(be.stream.C())); err != nil {
		return err
	}
	p, err := cu.MemAlloc(8)
	if err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	be.flags = uint64(p)
	return cu.MemsetD32(p, 0, 2)
}

func (be *Backend) queryDevice() error {
	name, err := be.device.Name()
	if err != nil {
		return fmt.Errorf("cuda: device name: %w", err)
	}
	be.name = name
	attrs, err := be.device.Attributes(cu.MultiprocessorCount, cu.ComputeCapabilityMajor, cu.ComputeCapabilityMinor)
	if err != nil {
		return fmt.Errorf("cuda: device attributes: %w", err)
	}
	be.numSMs, be.ccMajor, be.ccMinor = attrs[0], attrs[1], attrs[2]
	if be.ccMajor < 8 {
		return fmt.Errorf("cuda: %s has compute capability %d.%d; vserve needs 8.0 (Ampere) or newer", name, be.ccMajor, be.ccMinor)
	}
	if _, be.total, err = cu.MemInfo(); err != nil {
		return fmt.Errorf("cuda: memory info: %w", err)
	}
	return nil
}

// loadModules loads every embedded fat binary; the driver picks the cubin
// of the device's architecture or JIT-compiles the PTX.
func (be *Backend) loadModules() error {
	entries, err := kernelImages.ReadDir("kernels")
	if err != nil {
		return fmt.Errorf("cuda: embedded kernels: %w", err)
	}
	byName := map[string]cuFunction{}
	for _, e := range entries {
		img, err := kernelImages.ReadFile(path.Join("kernels", e.Name()))
		if err != nil {
			return fmt.Errorf("cuda: embedded kernels: %w", err)
		}
		mod, err := cu.LoadData(string(img))
		if err != nil {
			return fmt.Errorf("cuda: load module %s: %w", e.Name(), err)
		}
		be.mods = append(be.mods, mod)
		for _, name := range kernelNames[strings.TrimSuffix(e.Name(), ".fatbin")] {
			f, err := mod.Function(name)
			if err != nil {
				return fmt.Errorf("cuda: module %s: function %s: %w", e.Name(), name, err)
			}
			byName[name] = f
		}
	}
	return be.fn.bind(byName)
}

// teardown releases everything setup acquired (device goroutine).
func (be *Backend) teardown() error {
	var errs []error
	if be.blas != nil {
		be.blas.close()
		be.blas = nil
	}
	if be.flags != 0 {
		errs = append(errs, cu.MemFree(cu.DevicePtr(be.flags)))
		be.flags = 0
	}
	errs = append(errs, be.alloc.releaseAll())
	for i := range be.events {
		errs = append(errs, cu.DestroyEvent(&be.events[i]))
	}
	be.events = nil
	for _, m := range be.mods {
		errs = append(errs, m.Unload())
	}
	be.mods = nil
	var zero cu.Stream
	if be.stream != zero {
		errs = append(errs, be.stream.Destroy())
	}
	errs = append(errs, be.device.ReleasePrimaryCtx())
	return errors.Join(errs...)
}

// Name returns "cuda".
func (be *Backend) Name() string { return Name }

// DeviceName is the GPU's name, e.g. "NVIDIA H200".
func (be *Backend) DeviceName() string { return be.name }

// ComputeCapability is the GPU's compute capability (major, minor).
func (be *Backend) ComputeCapability() (int, int) { return be.ccMajor, be.ccMinor }

// CublasVersion is the loaded cuBLAS soname and version number.
func (be *Backend) CublasVersion() (string, int) { return be.blas.soname, be.blas.version }

// ComputeDType is the dtype of activations and the KV cache.
func (be *Backend) ComputeDType() kernel.DType { return be.compute }

// MemInfo returns the device's free and total memory in bytes.
func (be *Backend) MemInfo() (free, total int64, err error) {
	err = be.dev.do(func() error {
		var e error
		free, total, e = cu.MemInfo()
		return e
	})
	return
}

// Close waits for queued work and releases the device.
func (be *Backend) Close() error {
	return be.dev.close(func() error {
		serr := be.stream.Synchronize()
		return errors.Join(serr, be.teardown())
	})
}

// Sync waits for every queued op and reports the first asynchronous
// failure since the last Sync, and gathers with an index out of range.
func (be *Backend) Sync() error {
	return be.dev.do(func() error {
		if err := be.stream.Synchronize(); err != nil {
			return fmt.Errorf("cuda: stream: %w", err)
		}
		if err := be.dev.takeAsyncErr(); err != nil {
			return err
		}
		return be.checkFlags()
	})
}

// checkFlags reads and clears the device error flags (device goroutine).
func (be *Backend) checkFlags() error {
	var f [2]int32
	if err := cu.MemcpyDtoH(unsafe.Pointer(&f[0]), cu.DevicePtr(be.flags), 8); err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	if f[0] == 0 && f[1] == 0 {
		return nil
	}
	if err := cu.MemsetD32(cu.DevicePtr(be.flags), 0, 2); err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	return errors.New("cuda: Embedding or GatherRows index out of range")
}
