// Package cputime reads the CPU time this process has used, which the
// benchmarks and the runner's profile report beside wall time: on a
// shared, overloaded machine wall time mostly measures waiting for a core,
// CPU time the work done.
package cputime
