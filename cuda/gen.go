package cuda

// The kernels are compiled ahead of time (nvcc: sm_80 and sm_90 cubins,
// compute_90 PTX) into kernels/*.fatbin, which are committed and embedded
// by the cuda build. Regenerate after editing kernels/*.cu or *.cuh:
//
//go:generate bash kernels/gen.sh
