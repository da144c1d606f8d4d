// Command emit sends journey and step traces through package tracing to an
// OTLP collector, driving the hooks the way the engine and the server do
// with a scripted scheduler. jaeger.sh uses it to test the Jaeger half of
// the end-to-end check without a vserve binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
	"github.com/vserve/vserve/tracing"
)

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:4317", "OTLP endpoint")
	requests := flag.Int("requests", 4, "requests to simulate")
	tokens := flag.Int("tokens", 8, "output tokens per request")
	interval := flag.Int("interval", 10, "step closure interval")
	flag.Parse()
	cfg := tracing.DefaultConfig()
	cfg.OTLPTracesEndpoint = *endpoint
	cfg.EnableJourneyTracing = true
	cfg.StepTracingEnabled = true
	cfg.StepSampleRate, cfg.StepRichSubsampleRate, cfg.StepClosureInterval = 1, 1, *interval
	cfg.ModelName = "emit"
	tel, err := tracing.Setup(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	sim := &simulator{tel: tel, obs: tel.SchedulerObserver()}
	for i := range *requests {
		sim.request(fmt.Sprintf("emit-%d", i), 12, *tokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("emitted %d requests over %d steps\n", *requests, sim.step)
}

// simulator runs one request at a time through prefill and decode steps.
type simulator struct {
	tel  *tracing.Telemetry
	obs  scheduler.Observer
	step uint64
}

func (s *simulator) request(id string, prompt, maxTokens int) {
	api := s.tel.HTTP().Arrived(httptest.NewRequest("POST", "/v1/completions", nil), "/v1/completions")
	defer api.End()
	n := 1
	api.Parsed(server.RequestInfo{RequestID: "cmpl-" + id, Model: "emit", PromptTokens: prompt, MaxTokens: &maxTokens, N: &n})
	headers := api.TraceHeaders()
	times := engine.RequestTimes{Arrival: time.Now()}
	r := &request{id: id, prompt: prompt, maxTokens: maxTokens, phase: scheduler.PhaseWaiting}
	r.state = s.tel.OnRequestStart(engine.RequestStart{ID: id, TraceHeaders: headers, NumPromptTokens: prompt, MaxTokens: maxTokens, Arrival: times.Arrival})
	s.obs.Queued(r, s.step)
	api.HandoffToCore(time.Time{})
	for r.output < maxTokens {
		s.step++
		start := time.Now()
		scheduled := 1
		if r.output == 0 {
			scheduled = prompt
			r.phase = scheduler.PhasePrefill
			times.Scheduled = start
			s.obs.Scheduled(r, s.step, false)
		}
		out := &scheduler.Output{Step: s.step, TotalNumScheduledTokens: scheduled, NumScheduledTokens: map[string]int{id: scheduled}}
		s.obs.StepBuilt(out, &stepView{r: r, scheduled: scheduled, start: start})
		r.computed += scheduled
		r.output++
		r.phase = scheduler.PhaseDecode
		now := time.Now()
		if r.output == 1 {
			times.FirstToken = now
			s.obs.FirstToken(r, s.step)
			api.FirstResponseFromCore(now)
		}
		times.LastToken = now
		ro := []scheduler.RequestOutput{{ID: id, Step: s.step, NewTokenIDs: []int32{1}}}
		if r.output == maxTokens {
			times.Finished = now
			ro[0].FinishReason = scheduler.FinishLength
			s.obs.Finished(r, s.step, scheduler.FinishLength)
		}
		s.tel.OnStep(&engine.StepRecord{Step: s.step, Start: start, End: time.Now(), Prepare: 20 * time.Microsecond,
			Forward: 900 * time.Microsecond, Sample: 30 * time.Microsecond, NumScheduledTokens: scheduled, Outputs: ro})
	}
	s.tel.OnRequestEnd(engine.RequestEnd{ID: id, TraceHeaders: headers, Reason: scheduler.FinishLength,
		NumPromptTokens: prompt, NumOutputTokens: r.output, MaxTokens: maxTokens, Times: times, ObserverState: r.state})
	api.Departed(server.Outcome{CompletionTokens: r.output, Times: times})
}

// request is a scripted scheduler.RequestView.
type request struct {
	id                                  string
	prompt, computed, output, maxTokens int
	phase                               scheduler.Phase
	state                               any // from OnRequestStart
}

func (r *request) RequestID() string      { return r.id }
func (r *request) ObserverState() any     { return r.state }
func (r *request) NumPromptTokens() int   { return r.prompt }
func (r *request) NumComputedTokens() int { return r.computed }
func (r *request) NumOutputTokens() int   { return r.output }
func (r *request) MaxTokens() int         { return r.maxTokens }
func (r *request) PrefillHighWater() int  { return min(r.computed, r.prompt) }
func (r *request) Phase() scheduler.Phase { return r.phase }
func (r *request) NumPreemptions() int    { return 0 }
func (r *request) NumCachedTokens() int   { return 0 }
func (r *request) BlocksAllocated() int   { return (r.computed + 15) / 16 }
func (r *request) BlocksCached() int      { return 0 }
func (r *request) Priority() int          { return 0 }

// stepView is a scripted scheduler.StepView with one running request.
type stepView struct {
	r         *request
	scheduled int
	start     time.Time
}

func (v *stepView) NumRunning() int               { return 1 }
func (v *stepView) NumWaiting() int               { return 0 }
func (v *stepView) KVUsage() float64              { return 0.01 }
func (v *stepView) KVBlocksTotal() int            { return 1000 }
func (v *stepView) KVBlocksFree() int             { return 990 }
func (v *stepView) NumFinishedSincePrevStep() int { return 0 }
func (v *stepView) StartTime() time.Time          { return v.start }
func (v *stepView) Batch() scheduler.BatchCounts {
	if v.scheduled == 0 {
		return scheduler.BatchCounts{}
	}
	if v.r.NumOutputTokens() > 0 {
		return scheduler.BatchCounts{DecodeReqs: 1, DecodeTokens: v.scheduled}
	}
	return scheduler.BatchCounts{PrefillReqs: 1, PrefillTokens: v.scheduled}
}
func (v *stepView) Running(fn func(scheduler.RequestView, int, int)) {
	fn(v.r, v.scheduled, v.r.computed)
}
