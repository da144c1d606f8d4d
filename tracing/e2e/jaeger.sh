#!/usr/bin/env bash
# End-to-end tracing check against a real Jaeger (v1.76.0, the v2 collector
# binary), all on loopback.
#
#   tracing/e2e/jaeger.sh --emit                 # package tracing -> Jaeger (grpc and http/protobuf)
#   tracing/e2e/jaeger.sh /path/to/vserve [args] # a vserve binary built by the caller
#
# Jaeger is built with `go build` from its own module (never added to this
# repository's go.mod) and cached in $VSERVE_E2E_CACHE (default
# ~/.cache/vserve-e2e). Ports: OTLP gRPC $OTLP_GRPC_PORT (4317), OTLP HTTP
# $OTLP_HTTP_PORT (4318), query $JAEGER_QUERY_PORT (16686), vserve
# $VSERVE_PORT (18000). Traces are read back through Jaeger's query API and
# checked by tracing/e2e/checktraces.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JAEGER_VERSION=v1.76.0
CACHE=${VSERVE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vserve-e2e}
JAEGER_BIN=${JAEGER_BIN:-$CACHE/jaeger-$JAEGER_VERSION}
OTLP_GRPC_PORT=${OTLP_GRPC_PORT:-4317}
OTLP_HTTP_PORT=${OTLP_HTTP_PORT:-4318}
JAEGER_QUERY_PORT=${JAEGER_QUERY_PORT:-16686}
JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-16685}
VSERVE_PORT=${VSERVE_PORT:-18000}
REQUESTS=${REQUESTS:-4}
INTERVAL=10

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '[jaeger-e2e] %s\n' "$*"; }

build_jaeger() {
	if [ -x "$JAEGER_BIN" ]; then return; fi
	say "building jaeger $JAEGER_VERSION (once; cached at $JAEGER_BIN)"
	mkdir -p "$CACHE" "$WORK/mod"
	local dir
	dir=$(cd "$WORK/mod" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -d "$dir" ] || { echo "go mod download gave no directory" >&2; exit 1; }
	cp -r "$dir" "$WORK/jaeger-src"
	chmod -R u+w "$WORK/jaeger-src"
	(cd "$WORK/jaeger-src" && GOWORK=off GOFLAGS=-mod=mod go build -o "$JAEGER_BIN.tmp" ./cmd/jaeger)
	mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
	rm -rf "$WORK/jaeger-src"
}

start_jaeger() {
	cat > "$WORK/jaeger.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$OTLP_HTTP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
YAML
	"$JAEGER_BIN" --config "$WORK/jaeger.yaml" > "$WORK/jaeger.log" 2>&1 &
	PIDS+=($!)
	wait_http "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" 120 "$WORK/jaeger.log"
	say "jaeger up (OTLP $OTLP_GRPC_PORT/$OTLP_HTTP_PORT, query $JAEGER_QUERY_PORT)"
}

# wait_http URL SECONDS LOG: poll until URL answers 200.
wait_http() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		if curl -sf -o /dev/null "$1"; then return 0; fi
		sleep 0.2
	done
	echo "timed out waiting for $1; log:" >&2
	tail -50 "$3" >&2
	exit 1
}

check() { # service requests [core spans [step summaries at least]]
	(cd "$ROOT" && go run ./tracing/e2e/checktraces -query "http://127.0.0.1:$JAEGER_QUERY_PORT" \
		-service "$1" -requests "$2" -cores "${3:-$2}" -summaries "${4:-0}" -interval "$INTERVAL" -timeout 60s)
}

run_emit() {
	for proto in grpc http/protobuf; do
		local endpoint="127.0.0.1:$OTLP_GRPC_PORT" service="vserve-emit-grpc"
		if [ "$proto" = http/protobuf ]; then endpoint="127.0.0.1:$OTLP_HTTP_PORT" service="vserve-emit-http"; fi
		say "emitting $REQUESTS requests over $proto as $service"
		local out steps
		out=$(cd "$ROOT" && OTEL_SERVICE_NAME=$service OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=$proto \
			go run ./tracing/e2e/emit -endpoint "$endpoint" -requests "$REQUESTS" -interval "$INTERVAL")
		echo "$out"
		steps=$(echo "$out" | sed -n 's/^emitted [0-9]* requests over \([0-9]*\) steps$/\1/p')
		[ -n "$steps" ] || { echo "emit: no step count in its output" >&2; exit 1; }
		check "$service" "$REQUESTS" "$REQUESTS" "$steps"
	done
}

run_vserve() {
	local bin=$1
	shift
	local base="http://127.0.0.1:$VSERVE_PORT"
	say "starting $bin"
	OTEL_BSP_SCHEDULE_DELAY=500 "$bin" --host 127.0.0.1 --port "$VSERVE_PORT" --cache-dir "$WORK/cache" \
		--otlp-traces-endpoint "127.0.0.1:$OTLP_GRPC_PORT" \
		--enable-journey-tracing --journey-tracing-sample-rate 1 \
		--step-tracing-enabled --step-tracing-sample-rate 1 --step-tracing-rich-subsample-rate 1 \
		--step-tracing-closure-interval "$INTERVAL" "$@" > "$WORK/vserve.log" 2>&1 &
	local pid=$!
	PIDS+=($pid)
	wait_http "$base/health" 300 "$WORK/vserve.log"
	local model
	model=$(curl -sf "$base/v1/models" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
	say "serving model '$model'; sending $REQUESTS requests"
	local i stream n
	for ((i = 0; i < REQUESTS; i++)); do
		stream=false n=1
		if ((i % 2 == 1)); then stream=true; fi
		if ((i == 2)); then n=2; fi # two llm_core spans under one llm_request
		curl -sf "$base/v1/completions" -H 'Content-Type: application/json' \
			-d "{\"model\":\"$model\",\"prompt\":\"Once upon a time $i\",\"max_tokens\":8,\"n\":$n,\"stream\":$stream,\"ignore_eos\":true}" \
			> "$WORK/resp-$i.txt" || { cat "$WORK/vserve.log" >&2; exit 1; }
	done
	local cores=$REQUESTS # engine requests: one more for the n=2 request
	if ((REQUESTS > 2)); then cores=$((REQUESTS + 1)); fi
	curl -sf "$base/metrics" > "$WORK/metrics.txt"
	grep -q '^vllm:e2e_request_latency_seconds_count{.*} '"$cores"'$' "$WORK/metrics.txt" ||
		{ echo "metrics: want $cores engine requests in vllm:e2e_request_latency_seconds_count" >&2; grep '^vllm:' "$WORK/metrics.txt" >&2 || true; exit 1; }
	check_export_metrics "$base"
	# Every executed step has its summary (step rate 1.0), the last window's
	# only once shutdown has exported it.
	local steps
	steps=$(sed -n 's/^vllm:engine_steps_total{.*} \([0-9]*\)$/\1/p' "$WORK/metrics.txt")
	[ -n "$steps" ] || { echo "metrics: no vllm:engine_steps_total" >&2; exit 1; }
	say "stopping vserve (SIGTERM flushes the last spans) after $steps engine steps"
	kill -TERM "$pid"
	wait "$pid" || true
	check "${OTEL_SERVICE_NAME:-vserve}" "$REQUESTS" "$cores" "$steps"
}

# check_export_metrics BASE: within 30 s, /metrics counts spans exported to
# Jaeger over gRPC, and none dropped or failed.
check_export_metrics() {
	local i ok=""
	for ((i = 0; i < 150; i++)); do
		curl -sf "$1/metrics" > "$WORK/metrics.txt"
		if grep -q '^otel_sdk_exporter_span_exported_total{[^}]*otel_component_type="otlp_grpc_span_exporter"[^}]*} [1-9]' "$WORK/metrics.txt"; then
			ok=1
			break
		fi
		sleep 0.2
	done
	if [ -z "$ok" ] || grep -q '^otel_sdk_[a-z_]*_total{[^}]*error_type="[^}]*} [1-9]' "$WORK/metrics.txt"; then
		echo "metrics: want spans exported and none dropped or failed" >&2
		grep '^otel_sdk' "$WORK/metrics.txt" >&2 || true
		exit 1
	fi
	say "metrics: $(grep '^otel_sdk_exporter_span_exported_total' "$WORK/metrics.txt" | sed 's/.*} //') spans exported so far, none dropped or failed"
}

if [ $# -lt 1 ]; then
	sed -n '2,12p' "$0"
	exit 2
fi
command -v curl > /dev/null || { echo "curl is required" >&2; exit 1; }
build_jaeger
start_jaeger
if [ "$1" = --emit ]; then
	run_emit
else
	run_vserve "$@"
fi
say "PASS"
