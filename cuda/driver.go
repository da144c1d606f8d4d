//go:build cuda || cudaemu

package cuda

import "unsafe"

// driver is what the backend needs from the device: the CUDA driver API
// and cuBLAS (driver_cu.go, the cuda tag) or the CPU emulation of the
// kernels (driver_emu.go, the cudaemu tag, for tests without a GPU).
// Every method runs on the device goroutine.
type driver interface {
	open(ordinal int, cfg Config) (deviceInfo, error)
	close() error
	function(name string) (any, error)
	launch(fn any, name string, grid, block dim3, smem int, args []uint64) error
	alloc(bytes int64) (uint64, error)
	free(p uint64) error
	zero(p uint64, bytes int64) error
	htod(dst uint64, src unsafe.Pointer, bytes int64) error
	dtoh(dst unsafe.Pointer, src uint64, bytes int64) error
	sync() error
	memInfo() (free, total int64, err error)
	gemm(g *gemmArgs) error
	newEvent() (int, error)
	record(ev int) error
	elapsed(from, to int) (ms float64, err error)
	blasVersion() (string, int)
}

// CublasDirEnv names the environment variable holding a directory to load
// libcublas.so.N and libcublasLt.so.N from (e.g. the lib directory of the
// nvidia-cublas Python wheel). Without it the dynamic loader's search path
// is used.
const CublasDirEnv = "VSERVE_CUBLAS_DIR"

// deviceInfo describes the opened device.
type deviceInfo struct {
	name             string
	ccMajor, ccMinor int
	numSMs           int
	total            int64
}

// gemmArgs describes one column-major GEMM C = alpha·op(A)·op(B) + beta·C
// with device pointers and cudaDataType codes.
type gemmArgs struct {
	transA, transB   int
	m, n, k          int
	a, b, c          uint64
	aType, bType     int
	cType            int
	lda, ldb, ldc    int
	alpha, beta      float32
	strideA, strideB int64
	strideC          int64
	batch            int
}

// cuBLAS and CUDA enum values (stable across CUDA 11, 12 and 13).
const (
	cublasOpN       = 0
	cublasOpT       = 1
	cudaR32F        = 0
	cudaR16F        = 2
	cudaR16BF       = 14
	cublasCompute32 = 68 // CUBLAS_COMPUTE_32F
	cublasGemmAlgo  = -1 // CUBLAS_GEMM_DEFAULT
)
