package tracing

// Names fixed by spec/observability.md. They match the inference-sim/vllm
// fork and upstream vLLM so that existing collectors, queries and dashboards
// keep working.

// Instrumentation scopes (tracer names).
const (
	ScopeAPI       = "vllm.api"
	ScopeScheduler = "vllm.scheduler"
	ScopeStep      = "vllm.scheduler.step"
)

// Span names.
const (
	SpanRequest        = "llm_request"
	SpanCore           = "llm_core"
	SpanStepPrefix     = "scheduler_steps_" // + the window's sequence number
	DefaultServiceName = "vserve"
)

// JourneySampledHeader is the trace header that tells the engine to create
// the llm_core span. Only the exact value "1" does.
const JourneySampledHeader = "x-vllm-journey-sampled"

// API span events.
const (
	EventArrived       = "api.ARRIVED"
	EventHandoff       = "api.HANDOFF_TO_CORE"
	EventFirstResponse = "api.FIRST_RESPONSE_FROM_CORE"
	EventDeparted      = "api.DEPARTED"
	EventAborted       = "api.ABORTED"
)

// Core span event types; the event name is "journey." + type.
const (
	JourneyQueued     = "QUEUED"
	JourneyScheduled  = "SCHEDULED"
	JourneyFirstToken = "FIRST_TOKEN"
	JourneyPreempted  = "PREEMPTED"
	JourneyFinished   = "FINISHED"
)

// Step span events.
const (
	EventBatchSummary    = "step.BATCH_SUMMARY"
	EventRequestSnapshot = "step.REQUEST_SNAPSHOT"
)

// Attribute keys of the API span.
const (
	AttrRequestID        = "gen_ai.request.id"
	AttrHTTPRoute        = "http.route"
	AttrResponseModel    = "gen_ai.response.model"
	AttrPromptTokens     = "gen_ai.usage.prompt_tokens"
	AttrCompletionTokens = "gen_ai.usage.completion_tokens"
	AttrTemperature      = "gen_ai.request.temperature"
	AttrTopP             = "gen_ai.request.top_p"
	AttrMaxTokens        = "gen_ai.request.max_tokens"
	AttrN                = "gen_ai.request.n"
	AttrTimeInQueue      = "gen_ai.latency.time_in_queue"
	AttrTTFT             = "gen_ai.latency.time_to_first_token"
	AttrE2E              = "gen_ai.latency.e2e"
	AttrTimeInPrefill    = "gen_ai.latency.time_in_model_prefill"
	AttrTimeInDecode     = "gen_ai.latency.time_in_model_decode"
	AttrTimeInInference  = "gen_ai.latency.time_in_model_inference"

	AttrEventTSMonotonic = "event.ts.monotonic"
	AttrReason           = "reason"
	AttrError            = "error"
)

// Attribute keys of journey events.
const (
	AttrEventType           = "event.type"
	AttrTSMonotonic         = "ts.monotonic"
	AttrTSMonotonicNS       = "ts.monotonic_ns"
	AttrSchedulerStep       = "scheduler.step"
	AttrPhase               = "phase"
	AttrPrefillDoneTokens   = "prefill.done_tokens"
	AttrPrefillTotalTokens  = "prefill.total_tokens"
	AttrDecodeDoneTokens    = "decode.done_tokens"
	AttrDecodeMaxTokens     = "decode.max_tokens"
	AttrNumPreemptions      = "num_preemptions"
	AttrScheduleKind        = "schedule.kind"
	AttrFinishStatus        = "finish.status"
	ScheduleKindFirst       = "FIRST"
	ScheduleKindResume      = "RESUME"
	FinishStatusStopped     = "stopped"
	FinishStatusLength      = "length"
	FinishStatusAborted     = "aborted"
	FinishStatusIgnored     = "ignored"
	FinishStatusError       = "error"
	finishStatusUnspecified = "unknown"
)

// Attribute keys of step events and step spans.
const (
	AttrStepID             = "step.id"
	AttrStepTSStartNS      = "step.ts_start_ns"
	AttrStepTSEndNS        = "step.ts_end_ns"
	AttrStepDurationUS     = "step.duration_us"
	AttrQueueRunningDepth  = "queue.running_depth"
	AttrQueueWaitingDepth  = "queue.waiting_depth"
	AttrBatchNumPrefill    = "batch.num_prefill_reqs"
	AttrBatchNumDecode     = "batch.num_decode_reqs"
	AttrBatchScheduledTok  = "batch.scheduled_tokens"
	AttrBatchPrefillTokens = "batch.prefill_tokens"
	AttrBatchDecodeTokens  = "batch.decode_tokens"
	AttrBatchNumFinished   = "batch.num_finished"
	AttrBatchNumPreempted  = "batch.num_preempted"
	AttrKVUsageGPURatio    = "kv.usage_gpu_ratio"
	AttrKVBlocksTotalGPU   = "kv.blocks_total_gpu"
	AttrKVBlocksFreeGPU    = "kv.blocks_free_gpu"
	AttrDeviceForwardUS    = "device.forward_us"
	AttrDeviceSampleUS     = "device.sample_us"
	AttrRunnerPrepareUS    = "runner.prepare_us"

	AttrSnapRequestID         = "request.id"
	AttrSnapPhase             = "request.phase"
	AttrSnapNumPromptTokens   = "request.num_prompt_tokens"
	AttrSnapNumComputed       = "request.num_computed_tokens"
	AttrSnapNumOutputTokens   = "request.num_output_tokens"
	AttrSnapNumPreemptions    = "request.num_preemptions"
	AttrSnapScheduledThisStep = "request.scheduled_tokens_this_step"
	AttrSnapKVBlocksAllocated = "kv.blocks_allocated_gpu"
	AttrSnapKVBlocksCached    = "kv.blocks_cached_gpu"
	AttrSnapEffectivePromptLn = "request.effective_prompt_len"

	AttrSpanSequence    = "scheduler.span_sequence"
	AttrStepRangeStart  = "scheduler.step_range_start"
	AttrStepRangeEnd    = "scheduler.step_range_end"
	AttrClosureInterval = "scheduler.closure_interval"
)
