//go:build cuda

package app

import _ "github.com/vserve/vserve/cuda" // registers the "cuda" kernel backend
