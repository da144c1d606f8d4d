package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Keys fixed by spec/observability.md (repeated here on purpose: the check
// must not trust the package it checks).
var (
	apiEvents      = []string{"api.ARRIVED", "api.HANDOFF_TO_CORE", "api.FIRST_RESPONSE_FROM_CORE", "api.DEPARTED"}
	apiAttrs       = []string{"gen_ai.request.id", "http.route", "gen_ai.response.model", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens", "gen_ai.latency.time_in_queue", "gen_ai.latency.time_to_first_token", "gen_ai.latency.e2e", "gen_ai.latency.time_in_model_prefill", "gen_ai.latency.time_in_model_decode", "gen_ai.latency.time_in_model_inference"}
	journeyKeys    = []string{"event.type", "ts.monotonic", "ts.monotonic_ns", "scheduler.step", "phase", "prefill.done_tokens", "prefill.total_tokens", "decode.done_tokens", "decode.max_tokens", "num_preemptions"}
	summaryKeys    = []string{"step.id", "step.ts_start_ns", "step.ts_end_ns", "step.duration_us", "queue.running_depth", "queue.waiting_depth", "batch.num_prefill_reqs", "batch.num_decode_reqs", "batch.scheduled_tokens", "batch.prefill_tokens", "batch.decode_tokens", "batch.num_finished", "batch.num_preempted", "kv.usage_gpu_ratio", "kv.blocks_total_gpu", "kv.blocks_free_gpu"}
	deviceKeys     = []string{"device.forward_us", "device.sample_us", "runner.prepare_us"}
	snapshotKeys   = []string{"step.id", "request.id", "request.phase", "request.num_prompt_tokens", "request.num_computed_tokens", "request.num_output_tokens", "request.num_preemptions", "request.scheduled_tokens_this_step", "kv.blocks_allocated_gpu", "kv.blocks_cached_gpu"}
	windowAttrs    = []string{"scheduler.span_sequence", "scheduler.step_range_start", "scheduler.step_range_end", "scheduler.closure_interval"}
	finishStatuses = []string{"stopped", "length", "aborted", "ignored", "error"}
)

type expectations struct {
	requests int
	cores    int // llm_core spans at least
	interval int
	steps    bool
	// summaries is the number of step.BATCH_SUMMARY events expected at
	// least: the steps the server executed (vllm:engine_steps), each with
	// a summary at step rate 1.0. The last window is exported at
	// shutdown, and the collector may show it after the rest.
	summaries int
}

type summary struct {
	requests, cores, windows, summaries, snapshots int
}

// check validates every trace and returns what it counted and every
// violation found.
func check(traces []jaegerTrace, exp expectations) (summary, []error) {
	var sum summary
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var windows []jaegerSpan
	for _, tr := range traces {
		byID := map[string]jaegerSpan{}
		for _, s := range tr.Spans {
			byID[s.SpanID] = s
		}
		for _, s := range tr.Spans {
			switch {
			case s.OperationName == "llm_request":
				sum.requests++
				checkRequest(s, fail)
			case s.OperationName == "llm_core":
				sum.cores++
				checkCore(s, byID, fail)
			case strings.HasPrefix(s.OperationName, "scheduler_steps_"):
				windows = append(windows, s)
			}
		}
	}
	if sum.requests != exp.requests {
		fail("want %d llm_request spans, found %d", exp.requests, sum.requests)
	}
	if sum.cores < max(exp.cores, sum.requests) {
		fail("%d llm_request spans and %d llm_core spans, want at least %d llm_core", sum.requests, sum.cores, max(exp.cores, sum.requests))
	}
	if exp.steps {
		sum.windows = len(windows)
		sum.summaries, sum.snapshots = checkWindows(windows, exp.interval, fail)
		if sum.summaries < exp.summaries {
			fail("%d step summaries in %d windows, want at least %d (one per executed step)", sum.summaries, sum.windows, exp.summaries)
		}
	}
	return sum, errs
}

func checkRequest(s jaegerSpan, fail func(string, ...any)) {
	tags := index(s.Tags)
	if k := tags.str("span.kind"); k != "server" {
		fail("llm_request %s: span.kind %q, want server", s.SpanID, k)
	}
	if sc := scope(s); sc != "vllm.api" {
		fail("llm_request %s: scope %q, want vllm.api", s.SpanID, sc)
	}
	for _, a := range apiAttrs {
		if _, ok := tags[a]; !ok {
			fail("llm_request %s: missing attribute %s", s.SpanID, a)
		}
	}
	var names []string
	for _, e := range events(s) {
		names = append(names, e.name)
		if _, ok := e.fields["event.ts.monotonic"]; !ok {
			fail("llm_request %s: %s without event.ts.monotonic", s.SpanID, e.name)
		}
	}
	if !slices.Equal(names, apiEvents) {
		fail("llm_request %s: events %v, want %v", s.SpanID, names, apiEvents)
	}
}

func checkCore(s jaegerSpan, byID map[string]jaegerSpan, fail func(string, ...any)) {
	if sc := scope(s); sc != "vllm.scheduler" {
		fail("llm_core %s: scope %q, want vllm.scheduler", s.SpanID, sc)
	}
	var parent jaegerSpan
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			parent = byID[r.SpanID]
		}
	}
	if parent.OperationName != "llm_request" || parent.TraceID != s.TraceID {
		fail("llm_core %s: parent is %q, want the llm_request of its trace", s.SpanID, parent.OperationName)
	}
	evs := events(s)
	var types []string
	for _, e := range evs {
		types = append(types, e.name)
		for _, k := range journeyKeys {
			if _, ok := e.fields[k]; !ok {
				fail("llm_core %s: %s without %s", s.SpanID, e.name, k)
			}
		}
		if "journey."+e.fields.str("event.type") != e.name {
			fail("llm_core %s: %s has event.type %q", s.SpanID, e.name, e.fields.str("event.type"))
		}
	}
	if len(types) < 4 || types[0] != "journey.QUEUED" || types[1] != "journey.SCHEDULED" || types[len(types)-1] != "journey.FINISHED" {
		fail("llm_core %s: events %v: want QUEUED, SCHEDULED, ..., FINISHED", s.SpanID, types)
		return
	}
	if n := count(types, "journey.FIRST_TOKEN"); n != 1 {
		fail("llm_core %s: %d FIRST_TOKEN events, want 1", s.SpanID, n)
	}
	if st := evs[len(evs)-1].fields.str("finish.status"); !slices.Contains(finishStatuses, st) {
		fail("llm_core %s: finish.status %q", s.SpanID, st)
	}
	if k := evs[1].fields.str("schedule.kind"); k != "FIRST" {
		fail("llm_core %s: first SCHEDULED has schedule.kind %q", s.SpanID, k)
	}
}

func count(list []string, v string) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

// checkWindows checks the step windows: consecutive sequence numbers,
// increasing non-overlapping ranges within the interval, every summary and
// snapshot key, and device timing on steps that executed work.
func checkWindows(windows []jaegerSpan, interval int, fail func(string, ...any)) (summaries, snapshots int) {
	if len(windows) == 0 {
		fail("no scheduler_steps_<k> spans")
		return 0, 0
	}
	sort.Slice(windows, func(i, j int) bool {
		a, _ := index(windows[i].Tags).int("scheduler.span_sequence")
		b, _ := index(windows[j].Tags).int("scheduler.span_sequence")
		return a < b
	})
	var prevEnd int64
	withDevice := 0
	for i, w := range windows {
		tags := index(w.Tags)
		for _, a := range windowAttrs {
			if _, ok := tags[a]; !ok {
				fail("%s: missing %s", w.OperationName, a)
			}
		}
		seq, _ := tags.int("scheduler.span_sequence")
		start, _ := tags.int("scheduler.step_range_start")
		end, _ := tags.int("scheduler.step_range_end")
		ci, _ := tags.int("scheduler.closure_interval")
		if w.OperationName != fmt.Sprintf("scheduler_steps_%d", seq) || seq != int64(i+1) {
			fail("%s: span_sequence %d at position %d", w.OperationName, seq, i+1)
		}
		if ci != int64(interval) || end < start || end-start+1 > ci || start <= prevEnd {
			fail("%s: range [%d,%d] interval %d after %d", w.OperationName, start, end, ci, prevEnd)
		}
		if len(w.References) != 0 {
			fail("%s: step spans are roots", w.OperationName)
		}
		if sc := scope(w); sc != "vllm.scheduler.step" {
			fail("%s: scope %q", w.OperationName, sc)
		}
		prevEnd = end
		for _, e := range events(w) {
			switch e.name {
			case "step.BATCH_SUMMARY":
				summaries++
				requireKeys(w, e, summaryKeys, fail)
				if tok, _ := e.fields.int("batch.scheduled_tokens"); tok > 0 {
					requireKeys(w, e, deviceKeys, fail)
					withDevice++
				}
			case "step.REQUEST_SNAPSHOT":
				snapshots++
				requireKeys(w, e, snapshotKeys, fail)
			default:
				fail("%s: unexpected event %q", w.OperationName, e.name)
			}
			if id, _ := e.fields.int("step.id"); id < start || id > end {
				fail("%s: event of step %d outside [%d,%d]", w.OperationName, id, start, end)
			}
		}
	}
	if summaries == 0 || snapshots == 0 || withDevice == 0 {
		fail("step windows hold %d summaries (%d with device time) and %d snapshots; want some of each", summaries, withDevice, snapshots)
	}
	return summaries, snapshots
}

func requireKeys(w jaegerSpan, e event, keys []string, fail func(string, ...any)) {
	for _, k := range keys {
		if _, ok := e.fields[k]; !ok {
			fail("%s: %s without %s", w.OperationName, e.name, k)
		}
	}
}
