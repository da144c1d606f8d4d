// Package kernel defines the Backend interface through which the model
// forward pass and the runner reach a device, optional capability
// interfaces found by type assertion, and a registry of backends by name in
// the manner of database/sql drivers ("cpu" always, "cuda" with -tags cuda).
//
// The conformance suite every backend runs is in kerneltest; the pure-Go
// CPU backend, which is also the oracle, is in cpu.
package kernel
