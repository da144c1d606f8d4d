// Package engine runs the engine loop: one goroutine owns the scheduler (and
// through it the KV block manager) and the model executor, and repeats
// schedule -> execute -> update -> publish for as long as there is work.
//
// Requests enter through Add, which returns a Stream of coalesced per-request
// deltas; the loop never blocks on a slow reader. Aborts (client gone, stop
// string matched, deadline passed, shutdown) take effect within one step and
// free the request's KV blocks. Every step's timings (schedule, prepare,
// forward, sample, update) are reported with the step number through
// Config.OnStep; scheduling events reach Config.Observer; request lifetimes
// reach Config.OnRequestStart and Config.OnRequestEnd. The engine has no HTTP
// dependency and is usable as a library (see the Example).
package engine
