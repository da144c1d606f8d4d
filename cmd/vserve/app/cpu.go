package app

import _ "github.com/vserve/vserve/runtime/kernel/cpu" // registers the "cpu" kernel backend
