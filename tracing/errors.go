package tracing

import (
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
)

// exportErrorInterval is how often export errors are logged at most.
const exportErrorInterval = 30 * time.Second

// rateLimitedErrors routes the OpenTelemetry SDK's errors (a collector that
// is down fails every export) to the logger at most once per interval, with
// the number suppressed in between, so that a missing collector cannot
// flood the log.
type rateLimitedErrors struct {
	log      *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (h *rateLimitedErrors) Handle(err error) {
	h.mu.Lock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	suppressed := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.log.Warn("tracing: exporting spans failed (spans are dropped; serving is unaffected)",
		"err", err, "suppressed_since_last", suppressed)
}

// installErrorHandler makes the SDK's global error handler the rate-limited
// logger (the TracerProvider is the process's only one).
func installErrorHandler(log *slog.Logger) {
	otel.SetErrorHandler(&rateLimitedErrors{log: log, interval: exportErrorInterval})
}
