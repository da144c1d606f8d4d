package engine

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vserve/vserve/scheduler"
)

// LevelStep is the log level of the per-step log line (below Debug: off
// unless a handler asks for it).
const LevelStep = slog.LevelDebug - 4

// run is the engine loop. It is the only goroutine that touches the
// scheduler, the executor and the live map.
func (e *Engine) run() {
	defer close(e.done)
	defer e.finishAll(CauseShutdown)
	for {
		busy := e.sched.HasUnfinished()
		if !e.drainIntake(!busy) {
			return
		}
		e.expireDeadlines(time.Now())
		if !e.sched.HasUnfinished() {
			continue
		}
		if !e.step() {
			e.backoff()
		}
	}
}

// drainIntake applies pending adds and aborts. When block is true (no work)
// it first waits for intake. It returns false when the loop must exit:
// shutting down and nothing left, or the grace period is over.
func (e *Engine) drainIntake(block bool) bool {
	for {
		e.mu.Lock()
		adds, aborts := e.adds, e.aborts
		e.adds, e.aborts = nil, nil
		closing, abortAll := e.closing, e.abortAll
		e.mu.Unlock()

		for _, en := range adds {
			e.intakeAdd(en)
		}
		for _, a := range aborts {
			e.intakeAbort(a)
		}
		if abortAll {
			e.finishAll(CauseShutdown)
			return false
		}
		if closing && !e.sched.HasUnfinished() && len(e.live) == 0 {
			return false
		}
		if len(adds) > 0 || len(aborts) > 0 || !block || e.sched.HasUnfinished() {
			return true
		}
		<-e.wake
	}
}

// backoff waits briefly for intake after a step that could schedule
// nothing, so the loop does not spin.
func (e *Engine) backoff() {
	t := time.NewTimer(e.cfg.IdleBackoff)
	defer t.Stop()
	select {
	case <-e.wake:
		e.signal() // let drainIntake see it without blocking
	case <-t.C:
	}
}

func (e *Engine) intakeAdd(en *entry) {
	r := en.req
	e.live[r.ID] = en
	en.started = true
	if e.cfg.OnRequestStart != nil {
		en.observed = e.cfg.OnRequestStart(RequestStart{
			ID: r.ID, TraceHeaders: r.TraceHeaders, NumPromptTokens: len(r.PromptTokenIDs),
			MaxTokens: r.Params.MaxTokens, Arrival: en.times.Arrival,
		})
	}
	sr := &scheduler.Request{
		ID: r.ID, PromptTokenIDs: r.PromptTokenIDs, Params: r.Params,
		EOSTokenIDs: r.EOSTokenIDs, Priority: r.Priority, CacheSalt: r.CacheSalt,
		ObserverState: en.observed,
	}
	if err := e.sched.AddRequest(sr); err != nil {
		e.finish(en, scheduler.FinishError, CauseError, fmt.Errorf("engine: scheduler rejected request: %w", err))
		return
	}
	en.addedToSch = true
	if !r.Deadline.IsZero() {
		heap.Push(&e.deadlines, deadlineItem{at: r.Deadline, id: r.ID})
	}
}

func (e *Engine) intakeAbort(a abortMsg) {
	en, ok := e.live[a.id]
	if !ok {
		return
	}
	if en.addedToSch {
		e.sched.Abort(a.id, a.reason)
		e.refreshStats()
	}
	e.finish(en, a.reason, a.cause, nil)
}

// refreshStats publishes the scheduler's statistics outside a step. Every
// path that frees a request's blocks publishes them before finish removes
// the request from the active set, so a Snapshot that shows a request gone
// also shows its blocks freed.
func (e *Engine) refreshStats() { e.publishStats(e.sched.Stats()) }

// publishedStats returns the statistics last published (what Snapshot
// shows).
func (e *Engine) publishedStats() scheduler.Stats {
	e.admitMu.Lock()
	defer e.admitMu.Unlock()
	return e.lastStats
}

// publishStats makes st the statistics Snapshot reports.
func (e *Engine) publishStats(st scheduler.Stats) {
	e.admitMu.Lock()
	e.lastStats = st
	e.admitMu.Unlock()
}

// expireDeadlines aborts live requests whose deadline has passed.
func (e *Engine) expireDeadlines(now time.Time) {
	for e.deadlines.Len() > 0 && !e.deadlines[0].at.After(now) {
		it := heap.Pop(&e.deadlines).(deadlineItem)
		if en, ok := e.live[it.id]; ok && en.req.Deadline.Equal(it.at) {
			e.intakeAbort(abortMsg{id: it.id, reason: scheduler.FinishAbort, cause: CauseTimeout})
		}
	}
}

// step runs one schedule -> execute -> update -> publish cycle. It returns
// false when the scheduler produced no work.
func (e *Engine) step() bool {
	rec := &StepRecord{Start: time.Now()}
	out := e.schedule(rec)
	if out == nil || (out.TotalNumScheduledTokens == 0 && len(out.FinishedRequestIDs) == 0 && len(out.PreemptedRequestIDs) == 0) {
		return false
	}
	ro, err := e.execute(out, rec)
	outs := e.update(out, ro, rec)
	if err != nil {
		e.failBatch(out, err, rec)
	}
	e.publish(outs, rec)
	e.recordTiming(rec)
	return out.TotalNumScheduledTokens > 0
}

func (e *Engine) schedule(rec *StepRecord) *scheduler.Output {
	out := e.sched.Schedule()
	rec.Schedule = time.Since(rec.Start)
	if out == nil {
		return nil
	}
	rec.Step = out.Step
	rec.NumScheduledTokens = out.TotalNumScheduledTokens
	rec.NumNewRequests = len(out.NewRequests)
	rec.NumCachedRequests = len(out.CachedRequests)
	rec.NumPreempted = len(out.PreemptedRequestIDs)
	now := time.Now()
	for i := range out.NewRequests {
		if en, ok := e.live[out.NewRequests[i].ID]; ok && en.times.Scheduled.IsZero() {
			en.times.Scheduled = now
			e.dequeue(en)
		}
	}
	for _, id := range out.PreemptedRequestIDs {
		if en, ok := e.live[id]; ok {
			en.preempted++
		}
	}
	return out
}

func (e *Engine) execute(out *scheduler.Output, rec *StepRecord) (*scheduler.RunnerOutput, error) {
	t0 := time.Now()
	ro, err := e.safeExecute(out)
	rec.Execute = time.Since(t0)
	if err == nil && ro == nil {
		err = fmt.Errorf("engine: executor returned no output for step %d", out.Step)
	}
	if err != nil {
		rec.Err = err
		e.log.Error("step failed", "step", out.Step, "err", err)
		return nil, err // Update ends the step; failBatch then reports its requests
	}
	rec.Prepare, rec.Forward, rec.Sample = ro.Timing.Prepare, ro.Timing.Forward, ro.Timing.Sample
	return ro, nil
}

// safeExecute turns an executor panic into a step error, so a bug hit by
// one batch fails that batch's requests instead of the whole server.
func (e *Engine) safeExecute(out *scheduler.Output) (ro *scheduler.RunnerOutput, err error) {
	defer func() {
		if p := recover(); p != nil {
			ro, err = nil, fmt.Errorf("engine: executor panicked in step %d: %v", out.Step, p)
		}
	}()
	return e.exec.Execute(out)
}

func (e *Engine) update(out *scheduler.Output, ro *scheduler.RunnerOutput, rec *StepRecord) []scheduler.RequestOutput {
	t0 := time.Now()
	outs, stats := e.sched.Update(out, ro)
	rec.Stats = stats
	e.publishStats(stats) // before publish ends the finished requests
	rec.Update = time.Since(t0)
	return outs
}

// failBatch ends every request of a failed step with finish reason error.
func (e *Engine) failBatch(out *scheduler.Output, err error, rec *StepRecord) {
	for id := range out.NumScheduledTokens {
		if _, ok := e.live[id]; ok {
			e.sched.Abort(id, scheduler.FinishError)
		}
	}
	rec.Stats = e.sched.Stats()
	e.publishStats(rec.Stats)
	for id := range out.NumScheduledTokens {
		if en, ok := e.live[id]; ok {
			e.finish(en, scheduler.FinishError, CauseError, err)
		}
	}
}

// publish hands each delta to its stream; it never blocks.
func (e *Engine) publish(outs []scheduler.RequestOutput, rec *StepRecord) {
	t0 := time.Now()
	rec.Outputs = outs
	for i := range outs {
		o := &outs[i]
		en, ok := e.live[o.ID]
		if !ok {
			continue
		}
		cause := ""
		if en.req.StopCheck != nil {
			stopped, err := e.checkStop(en, o, rec)
			if err != nil {
				e.failRequest(en, o, err, rec)
				continue
			}
			if stopped {
				cause = CauseStopString
			}
		}
		if len(o.NewTokenIDs) > 0 {
			if en.times.FirstToken.IsZero() {
				en.times.FirstToken = t0
			}
			en.times.LastToken = t0
			en.numOutput += len(o.NewTokenIDs)
		}
		if o.NumCachedTokens > en.numCached {
			en.numCached = o.NumCachedTokens
		}
		en.stream.push(o.NewTokenIDs, o.Logprobs, o.PromptLogprobs, en.numCached, en.times.FirstToken, o.FinishReason != scheduler.FinishNone)
		if o.FinishReason != scheduler.FinishNone {
			e.finish(en, o.FinishReason, cause, nil)
			rec.NumFinished++
		}
	}
	rec.Update += time.Since(t0)
}

// checkStop passes o's new tokens to the request's StopCheck. On a stop it
// keeps the tokens up to the stopping one and finishes the request with
// reason stop, ending it in the scheduler (endInScheduler: its blocks are
// freed before the next step); stopped reports
// a stop on a token the scheduler had not stopped at. A panic in StopCheck
// is returned as an error.
func (e *Engine) checkStop(en *entry, o *scheduler.RequestOutput, rec *StepRecord) (stopped bool, err error) {
	for i, tok := range o.NewTokenIDs {
		end := scheduler.FinishNone
		if i == len(o.NewTokenIDs)-1 {
			end = o.FinishReason
		}
		stop, err := callStopCheck(en.req.StopCheck, tok, end)
		if err != nil {
			return false, err
		}
		if !stop {
			continue
		}
		o.NewTokenIDs = o.NewTokenIDs[:i+1]
		if len(o.Logprobs) > i+1 {
			o.Logprobs = o.Logprobs[:i+1]
		}
		e.endInScheduler(o, scheduler.FinishStop, rec)
		stopped = end != scheduler.FinishStop
		o.FinishReason = scheduler.FinishStop
		return stopped, nil
	}
	return false, nil
}

// callStopCheck calls check, turning a panic into an error: a faulty
// StopCheck fails its request, not the engine.
func callStopCheck(check func(int32, scheduler.FinishReason) bool, tok int32, end scheduler.FinishReason) (stop bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("engine: the request's StopCheck panicked: %v", p)
		}
	}()
	return check(tok, end), nil
}

// failRequest ends one request of the step with finish reason error,
// ending it in the scheduler first (endInScheduler).
func (e *Engine) failRequest(en *entry, o *scheduler.RequestOutput, err error, rec *StepRecord) {
	e.endInScheduler(o, scheduler.FinishError, rec)
	o.NewTokenIDs, o.Logprobs, o.FinishReason = nil, nil, scheduler.FinishError
	e.finish(en, scheduler.FinishError, CauseError, err)
	rec.NumFinished++
}

// endInScheduler ends o's request in the scheduler with reason, unless the
// scheduler ended it in this step, and publishes the statistics with its
// blocks freed (in rec too).
func (e *Engine) endInScheduler(o *scheduler.RequestOutput, reason scheduler.FinishReason, rec *StepRecord) {
	if o.FinishReason != scheduler.FinishNone {
		return
	}
	e.sched.Abort(o.ID, reason)
	rec.Stats = e.sched.Stats()
	e.publishStats(rec.Stats)
}

func (e *Engine) recordTiming(rec *StepRecord) {
	rec.End = time.Now()
	e.admitMu.Lock()
	e.lastStats = rec.Stats
	e.stepsExecuted++
	e.admitMu.Unlock()
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(rec)
	}
	rec.Outputs = nil
	if e.log.Enabled(context.Background(), LevelStep) {
		e.log.Log(context.Background(), LevelStep, "step", "step", rec.Step, "tokens", rec.NumScheduledTokens,
			"new", rec.NumNewRequests, "running", rec.Stats.NumRunning, "waiting", rec.Stats.NumWaiting,
			"schedule", rec.Schedule, "prepare", rec.Prepare, "forward", rec.Forward, "sample", rec.Sample,
			"update", rec.Update)
	}
}

// finish ends a live request: removes it, releases admission, closes its
// stream with the final output and reports RequestEnd.
func (e *Engine) finish(en *entry, reason scheduler.FinishReason, cause string, err error) {
	id := en.req.ID
	if _, ok := e.live[id]; !ok {
		return
	}
	delete(e.live, id)
	en.times.Finished = time.Now()
	e.dequeue(en)
	e.release(id, false, 0)
	en.stream.finish(reason, cause, err, en.times)
	if e.cfg.OnRequestEnd != nil && en.started {
		e.cfg.OnRequestEnd(RequestEnd{
			ID: id, TraceHeaders: en.req.TraceHeaders, Reason: reason, AbortCause: cause,
			NumPromptTokens: len(en.req.PromptTokenIDs), NumOutputTokens: en.numOutput,
			NumCachedTokens: en.numCached, MaxTokens: en.req.Params.MaxTokens,
			NumPreemptions: en.preempted, Times: en.times, Stats: e.publishedStats(),
			ObserverState: en.observed,
		})
	}
}

// finishAll aborts every live request (shutdown).
func (e *Engine) finishAll(cause string) {
	for id, en := range e.live {
		if en.addedToSch {
			e.sched.Abort(id, scheduler.FinishAbort)
		}
	}
	e.refreshStats()
	for _, en := range e.live {
		e.finish(en, scheduler.FinishAbort, cause, nil)
	}
	e.mu.Lock()
	adds := e.adds
	e.adds = nil
	e.mu.Unlock()
	for _, en := range adds {
		e.live[en.req.ID] = en
		e.finish(en, scheduler.FinishAbort, cause, nil)
	}
	e.refreshStats()
}
