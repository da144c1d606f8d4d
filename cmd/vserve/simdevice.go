//go:build simdevice

package main

// The simulated device (--device sim) for measuring the host side of
// serving as on a GPU server; see runtime/kernel/simdevice.
import _ "github.com/vserve/vserve/runtime/kernel/simdevice"
