// Package emu runs the CUDA kernels of package cuda on the CPU, through
// an emulation of the CUDA execution model (cuda/kernels/emu/emu.h), for
// tests on machines without a GPU. It is built only with the cudaemu tag;
// package cuda built with that tag (and without cuda) uses it in place of
// the driver, so that the whole backend, Go side included, can run the
// conformance suite here. Nothing in it says anything about speed.
package emu
