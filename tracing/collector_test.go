package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// stalledCollector accepts connections and never answers.
type stalledCollector struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  sync.WaitGroup
}

func newStalledCollector(t *testing.T) *stalledCollector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &stalledCollector{ln: ln}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.done.Add(1)
			go func() { defer s.done.Done(); _, _ = io.Copy(io.Discard, c) }() // read, never write
		}
	}()
	return s
}

func (s *stalledCollector) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.done.Wait()
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestCollectorDownOrStalledNeverBlocks serves many fully traced requests
// (journey and step tracing at rate 1) against a collector that is down or
// never answers, with a small export queue. Were any hook to wait for the
// collector, the test would hang instead of finishing.
func TestCollectorDownOrStalledNeverBlocks(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		for _, mode := range []string{"down", "stalled"} {
			t.Run(proto+"/"+mode, func(t *testing.T) {
				endpoint := closedPort(t)
				var stalled *stalledCollector
				if mode == "stalled" {
					stalled = newStalledCollector(t)
					endpoint = stalled.ln.Addr().String()
				}
				c := DefaultConfig()
				c.OTLPTracesEndpoint = endpoint
				c.Protocol = proto
				c.EnableJourneyTracing = true
				c.StepTracingEnabled = true
				c.StepSampleRate, c.StepRichSubsampleRate, c.StepClosureInterval = 1, 1, 10
				c.MaxExportQueue = 16
				c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				c.ExportTimeout = 100 * time.Millisecond // lets the exporter's goroutines end soon after the test
				tel, err := Setup(t.Context(), c)
				require.NoError(t, err)
				h := &harness{t: t, tel: tel, obs: tel.SchedulerObserver()}
				for i := range 300 {
					f := h.newFlow(fmt.Sprint(i), 4, 2, nil)
					out, v := batch(uint64(i + 1))
					h.obs.StepBuilt(out, v)
					f.schedule(uint64(i+1), false, 4)
					f.token(uint64(i + 1))
					f.finish(uint64(i+1), scheduler.FinishStop)
					f.api.Departed(server.Outcome{CompletionTokens: 1, Times: f.times})
					f.api.End()
				}
				h.requireNoState()
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				defer cancel()
				_ = tel.Shutdown(ctx) // may report the undelivered spans; must return
				if stalled != nil {
					stalled.close()
				}
			})
		}
	}
}

func TestExportErrorsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	h := &rateLimitedErrors{log: slog.New(slog.NewTextHandler(&buf, nil)), interval: time.Hour}
	for range 100 {
		h.Handle(errors.New("connection refused"))
	}
	require.Equal(t, 1, strings.Count(buf.String(), "exporting spans failed"))
	h.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	h.Handle(errors.New("connection refused"))
	require.Equal(t, 2, strings.Count(buf.String(), "exporting spans failed"))
	require.Contains(t, buf.String(), "suppressed_since_last=99")
}
