//go:build cuda

package cuda

// This is the package's only cgo file: cuBLAS, loaded at run time with
// dlopen so that the binary depends on the driver library (libcuda, which
// gorgonia.org/cu links) and nothing else of the CUDA user space. Every C
// function returns a status code; nothing here aborts.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

typedef int (*vs_create_t)(void **handle);
typedef int (*vs_destroy_t)(void *handle);
typedef int (*vs_set_stream_t)(void *handle, void *stream);
typedef int (*vs_get_version_t)(void *handle, int *version);
typedef int (*vs_gemm_ex_t)(void *handle, int transa, int transb, int m, int n, int k,
	const void *alpha, const void *A, int Atype, int lda, const void *B, int Btype, int ldb,
	const void *beta, void *C, int Ctype, int ldc, int computeType, int algo);
typedef int (*vs_gemm_sb_ex_t)(void *handle, int transa, int transb, int m, int n, int k,
	const void *alpha, const void *A, int Atype, int lda, long long strideA,
	const void *B, int Btype, int ldb, long long strideB, const void *beta,
	void *C, int Ctype, int ldc, long long strideC, int batchCount, int computeType, int algo);

typedef struct {
	void *lt;
	void *lib;
	vs_create_t create;
	vs_destroy_t destroy;
	vs_set_stream_t set_stream;
	vs_get_version_t get_version;
	vs_gemm_ex_t gemm_ex;
	vs_gemm_sb_ex_t gemm_sb_ex;
} vs_cublas;

// vs_copy_dlerror copies the last dlerror message into buf.
static void vs_copy_dlerror(char *buf, int len) {
	const char *e = dlerror();
	if (e == NULL) e = "unknown dlopen error";
	strncpy(buf, e, len - 1);
	buf[len - 1] = 0;
}

static void vs_cublas_close(vs_cublas *c) {
	if (c->lib != NULL) dlclose(c->lib);
	if (c->lt != NULL) dlclose(c->lt);
	memset(c, 0, sizeof(*c));
}

// vs_cublas_open loads libcublasLt (optional path, may be NULL) then
// libcublas and resolves the symbols. Returns 0 on success, 1 when a
// library does not load, 2 when a symbol is missing (err holds dlerror).
static int vs_cublas_open(const char *lt, const char *path, vs_cublas *c, char *err, int errlen) {
	memset(c, 0, sizeof(*c));
	if (lt != NULL) {
		c->lt = dlopen(lt, RTLD_NOW | RTLD_GLOBAL);
		if (c->lt == NULL) { vs_copy_dlerror(err, errlen); return 1; }
	}
	c->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (c->lib == NULL) {
		vs_copy_dlerror(err, errlen);
		if (c->lt != NULL) dlclose(c->lt);
		c->lt = NULL;
		return 1;
	}
#define VS_SYM(field, name, type) \
	c->field = (type)dlsym(c->lib, name); \
	if (c->field == NULL) { vs_copy_dlerror(err, errlen); vs_cublas_close(c); return 2; }
	VS_SYM(create, "cublasCreate_v2", vs_create_t)
	VS_SYM(destroy, "cublasDestroy_v2", vs_destroy_t)
	VS_SYM(set_stream, "cublasSetStream_v2", vs_set_stream_t)
	VS_SYM(get_version, "cublasGetVersion_v2", vs_get_version_t)
	VS_SYM(gemm_ex, "cublasGemmEx", vs_gemm_ex_t)
	VS_SYM(gemm_sb_ex, "cublasGemmStridedBatchedEx", vs_gemm_sb_ex_t)
#undef VS_SYM
	return 0;
}


static int vs_create(vs_cublas *c, void **h) { return c->create(h); }
static int vs_destroy(vs_cublas *c, void *h) { return c->destroy(h); }
static int vs_set_stream(vs_cublas *c, void *h, void *s) { return c->set_stream(h, s); }
static int vs_version(vs_cublas *c, void *h, int *v) { return c->get_version(h, v); }

static int vs_gemm(vs_cublas *c, void *h, int ta, int tb, int m, int n, int k, float alpha,
		unsigned long long A, int at, int lda, unsigned long long B, int bt, int ldb, float beta,
		unsigned long long C, int ct, int ldc, int compute, int algo) {
	return c->gemm_ex(h, ta, tb, m, n, k, &alpha, (const void *)A, at, lda, (const void *)B, bt, ldb,
		&beta, (void *)C, ct, ldc, compute, algo);
}

static int vs_gemm_strided(vs_cublas *c, void *h, int ta, int tb, int m, int n, int k, float alpha,
		unsigned long long A, int at, int lda, long long sa, unsigned long long B, int bt, int ldb, long long sb,
		float beta, unsigned long long C, int ct, int ldc, long long sc, int batch, int compute, int algo) {
	return c->gemm_sb_ex(h, ta, tb, m, n, k, &alpha, (const void *)A, at, lda, sa, (const void *)B, bt, ldb, sb,
		&beta, (void *)C, ct, ldc, sc, batch, compute, algo);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"
)

// cublasMajors are the cuBLAS sonames tried, newest first.
var cublasMajors = []string{"13", "12", "11"}

// cublas is a loaded cuBLAS library with one handle.
type cublas struct {
	lib     *C.vs_cublas // C memory: the function table
	handle  unsafe.Pointer
	soname  string
	version int
}

// cublasStatusError is a cuBLAS status code as a Go error.
type cublasStatusError int

func (e cublasStatusError) Error() string {
	names := map[int]string{
		1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
		11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED", 16: "LICENSE_ERROR",
	}
	if n, ok := names[int(e)]; ok {
		return "cublas: CUBLAS_STATUS_" + n
	}
	return fmt.Sprintf("cublas: status %d", int(e))
}

func cublasErr(st C.int) error {
	if st == 0 {
		return nil
	}
	return cublasStatusError(st)
}

// loadCublas dlopens cuBLAS from dir (empty: the loader's search path),
// trying the CUDA 13, 12 and 11 sonames, and creates a handle bound to
// stream (a CUstream, nil for the default stream). It must run on the
// device goroutine (the handle belongs to the current context).
func loadCublas(dir string, stream unsafe.Pointer) (*cublas, error) {
	var errs []error
	for _, major := range cublasMajors {
		name, ltName := "libcublas.so."+major, "libcublasLt.so."+major
		path, ltPath := name, ""
		if dir != "" {
			path = filepath.Join(dir, name)
			ltPath = filepath.Join(dir, ltName)
			if _, err := os.Stat(path); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c, err := openCublas(ltPath, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.soname = name
		if err := c.init(stream); err != nil {
			// A cuBLAS newer than the driver fails here (its handle cannot
			// be created); an older one may still work.
			c.close()
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		return c, nil
	}
	return nil, fmt.Errorf("cuda: no usable cuBLAS (set %s to the directory holding libcublas.so.N): %w",
		CublasDirEnv, errors.Join(errs...))
}

func openCublas(ltPath, path string) (*cublas, error) {
	lib := (*C.vs_cublas)(C.calloc(1, C.size_t(unsafe.Sizeof(C.vs_cublas{}))))
	if lib == nil {
		return nil, errors.New("cuda: calloc failed")
	}
	cPath := C.CString(path)
	defer C.free(unsafe.Pointer(cPath))
	var cLt *C.char
	if ltPath != "" {
		cLt = C.CString(ltPath)
		defer C.free(unsafe.Pointer(cLt))
	}
	var msg [512]C.char
	if st := C.vs_cublas_open(cLt, cPath, lib, &msg[0], C.int(len(msg))); st != 0 {
		C.free(unsafe.Pointer(lib))
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(&msg[0]))
	}
	return &cublas{lib: lib}, nil
}

func (c *cublas) init(stream unsafe.Pointer) error {
	var h unsafe.Pointer
	if err := cublasErr(C.vs_create(c.lib, &h)); err != nil {
		return fmt.Errorf("cublasCreate: %w", err)
	}
	c.handle = h
	if err := cublasErr(C.vs_set_stream(c.lib, h, stream)); err != nil {
		return fmt.Errorf("cublasSetStream: %w", err)
	}
	var v C.int
	if err := cublasErr(C.vs_version(c.lib, h, &v)); err != nil {
		return fmt.Errorf("cublasGetVersion: %w", err)
	}
	c.version = int(v)
	return nil
}

func (c *cublas) close() {
	if c.lib == nil {
		return
	}
	if c.handle != nil {
		C.vs_destroy(c.lib, c.handle)
		c.handle = nil
	}
	C.vs_cublas_close(c.lib)
	C.free(unsafe.Pointer(c.lib))
	c.lib = nil
}

func (c *cublas) gemm(g *gemmArgs) error {
	st := C.vs_gemm(c.lib, c.handle, C.int(g.transA), C.int(g.transB), C.int(g.m), C.int(g.n), C.int(g.k),
		C.float(g.alpha), C.ulonglong(g.a), C.int(g.aType), C.int(g.lda), C.ulonglong(g.b), C.int(g.bType), C.int(g.ldb),
		C.float(g.beta), C.ulonglong(g.c), C.int(g.cType), C.int(g.ldc), cublasCompute32, cublasGemmAlgo)
	if err := cublasErr(st); err != nil {
		return fmt.Errorf("cublasGemmEx %dx%dx%d: %w", g.m, g.n, g.k, err)
	}
	return nil
}

func (c *cublas) gemmStridedBatched(g *gemmArgs) error {
	st := C.vs_gemm_strided(c.lib, c.handle, C.int(g.transA), C.int(g.transB), C.int(g.m), C.int(g.n), C.int(g.k),
		C.float(g.alpha), C.ulonglong(g.a), C.int(g.aType), C.int(g.lda), C.longlong(g.strideA),
		C.ulonglong(g.b), C.int(g.bType), C.int(g.ldb), C.longlong(g.strideB),
		C.float(g.beta), C.ulonglong(g.c), C.int(g.cType), C.int(g.ldc), C.longlong(g.strideC), C.int(g.batch),
		cublasCompute32, cublasGemmAlgo)
	if err := cublasErr(st); err != nil {
		return fmt.Errorf("cublasGemmStridedBatchedEx %dx%dx%d×%d: %w", g.m, g.n, g.k, g.batch, err)
	}
	return nil
}
