package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vserve/vserve/runtime/kernel"
)

// kernelDType maps a loadable safetensors dtype to the kernel's.
func kernelDType(st string) (kernel.DType, bool) {
	switch st {
	case "F32":
		return kernel.F32, true
	case "F16":
		return kernel.F16, true
	case "BF16":
		return kernel.BF16, true
	}
	return 0, false
}

// decodeF32 converts raw little-endian tensor bytes of a loadable dtype to float32.
func decodeF32(st string, raw []byte) ([]float32, error) {
	switch st {
	case "F32":
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	case "F16", "BF16":
		dt, _ := kernelDType(st)
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = kernel.ToF32(dt, binary.LittleEndian.Uint16(raw[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported dtype %s", st)
}

// rawU16 reads raw little-endian 16-bit values.
func rawU16(raw []byte) []uint16 {
	out := make([]uint16, len(raw)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	return out
}

// encodeHost converts float32 values to the host slice Upload expects for dt.
func encodeHost(dt kernel.DType, v []float32) (any, error) {
	switch dt {
	case kernel.F32:
		return v, nil
	case kernel.F16, kernel.BF16:
		out := make([]uint16, len(v))
		for i, f := range v {
			out[i] = kernel.FromF32(dt, f)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot encode floats as %v", dt)
}
