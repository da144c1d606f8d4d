//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/vserve/vserve/runtime/kernel"
)

// DTypeEnv selects the compute dtype of backends opened through the
// registry: "bf16", "f16" or "f32". Unset, it follows the weights'
// 16-bit dtype (kernel.Options.WeightsDType), else bf16.
const DTypeEnv = "VSERVE_CUDA_DTYPE"

func init() {
	kernel.Register(Name, func(o kernel.Options) (kernel.Backend, error) {
		cfg, err := ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		if os.Getenv(DTypeEnv) == "" {
			cfg.ComputeDType = computeDTypeFor(o.WeightsDType)
		}
		return New(o, cfg)
	})
}

// computeDTypeFor is the compute dtype for weights of the given
// torch_dtype: theirs when they are 16-bit (an f16 matrix under bf16
// compute, or the reverse, would be widened to f32 at every MatMul), else
// bf16.
func computeDTypeFor(weights string) kernel.DType {
	if weights == "float16" {
		return kernel.F16
	}
	return kernel.BF16
}

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
	drv     driver
	ordinal int
	compute kernel.DType
	info    deviceInfo
	numSMs  int
	fn      kernels

	alloc allocator
	flags uint64 // device int32[2]: set by gathers on an index out of range

	mu     sync.Mutex
	events []int // driver event per mark handle
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
	be := &Backend{ordinal: opts.Device, compute: cfg.ComputeDType, drv: newDriver()}
	be.alloc.be = be
	dev, err := startDevice(func() error { return be.setup(cfg) })
	if err != nil {
		return nil, err
	}
	be.dev = dev
	return be, nil
}

// setup runs on the device goroutine.
func (be *Backend) setup(cfg Config) (err error) {
	if be.info, err = be.drv.open(be.ordinal, cfg); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			be.drv.close()
		}
	}()
	be.numSMs = be.info.numSMs
	byName := map[string]any{}
	for _, names := range kernelNames {
		for _, name := range names {
			f, err := be.drv.function(name)
			if err != nil {
				return err
			}
			byName[name] = f
		}
	}
	if err = be.fn.bind(byName); err != nil {
		return err
	}
	if be.flags, err = be.drv.alloc(8); err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	return be.drv.zero(be.flags, 8)
}

// teardown releases everything setup acquired (device goroutine).
func (be *Backend) teardown() error {
	errs := []error{be.drv.sync(), be.alloc.releaseAll()}
	if be.flags != 0 {
		errs = append(errs, be.drv.free(be.flags))
		be.flags = 0
	}
	errs = append(errs, be.drv.close())
	return joinErrs(errs)
}

// Name returns "cuda".
func (be *Backend) Name() string { return Name }

// DeviceName is the GPU's name, e.g. "NVIDIA H200".
func (be *Backend) DeviceName() string { return be.info.name }

// ComputeCapability is the GPU's compute capability (major, minor).
func (be *Backend) ComputeCapability() (int, int) { return be.info.ccMajor, be.info.ccMinor }

// CublasVersion is the loaded cuBLAS soname and version number.
func (be *Backend) CublasVersion() (string, int) {
	var name string
	var v int
	_ = be.dev.do(func() error { name, v = be.drv.blasVersion(); return nil })
	return name, v
}

// ComputeDType is the dtype of activations and the KV cache.
func (be *Backend) ComputeDType() kernel.DType { return be.compute }

// MemInfo returns the device's free and total memory in bytes.
func (be *Backend) MemInfo() (free, total int64, err error) {
	err = be.dev.do(func() error {
		var e error
		free, total, e = be.drv.memInfo()
		return e
	})
	return
}

// Close waits for queued work and releases the device.
func (be *Backend) Close() error {
	return be.dev.close(be.teardown)
}

// CheckAttention reports, before serving, a model and scheduler shape for
// which PagedAttention could not run some batch (see
// checkAttentionShape); otherwise such a batch would fail at its first step.
func (be *Backend) CheckAttention(numKVHeads, headDim, blockSize, maxNumSeqs int) error {
	return checkAttentionShape(numKVHeads, headDim, blockSize, maxNumSeqs)
}

// StepBytes is the device memory one step of shape s may need besides
// the weights and the KV cache (ActivationBytes at the compute dtype), so
// that the server can reserve it before sizing the KV cache.
func (be *Backend) StepBytes(s kernel.StepShape) int64 {
	return ActivationBytes(ActivationShape{StepShape: s, DTypeSize: be.compute.Size()})
}

// The capabilities the server checks at start (cmd/vserve/app).
var _ interface {
	CheckAttention(numKVHeads, headDim, blockSize, maxNumSeqs int) error
	StepBytes(kernel.StepShape) int64
	MemInfo() (free, total int64, err error)
} = (*Backend)(nil)

// Sync waits for every queued op and reports the first asynchronous
// failure since the last Sync, and gathers with an index out of range.
func (be *Backend) Sync() error {
	return be.dev.do(func() error {
		if err := be.drv.sync(); err != nil {
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
	if err := be.drv.dtoh(unsafe.Pointer(&f[0]), be.flags, 8); err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	if f[0] == 0 && f[1] == 0 {
		return nil
	}
	if err := be.drv.zero(be.flags, 8); err != nil {
		return fmt.Errorf("cuda: flags: %w", err)
	}
	return fmt.Errorf("cuda: Embedding or GatherRows index out of range")
}

func joinErrs(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("cuda: close: %v", out)
}
