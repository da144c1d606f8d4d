#!/usr/bin/env bash
# bench/gpu/check.sh: the GPU check of the CUDA backend, in two halves.
#
#   bash bench/gpu/check.sh build   # here, with Go and the CUDA toolkit (nvcc, cuda.h)
#   bash bench/gpu/check.sh run     # on the GPU machine (no Go needed), < 8 minutes
#
# build compiles, into bench/gpu/bin/ (ignored by git through
# .gitignore), the cuda-tagged test-and-benchmark binary of package
# cuda and a cuda-tagged vserve. run then, on a machine with the NVIDIA
# driver and cuBLAS (found in the Python wheels when VSERVE_CUBLAS_DIR is
# unset):
#   1. runs the tests: kerneltest.Run (every op against float64 references
#      with fresh random inputs and NaN-poisoned outputs) in bf16, f16 and
#      f32, the device sampler against runtime/sample, long-context
#      attention against the CPU backend, and a random-weight model served
#      through the scheduler and runner on the GPU and on the CPU with
#      greedy tokens compared;
#   2. serves vserve's built-in random-weight model over HTTP with
#      --device cuda and --device cpu and compares greedy completions;
#   3. measures the ceilings (HBM read bandwidth, bf16 GEMM rate), paged
#      decode attention (Llama-8B shape, bf16, block 16, batch 1/16/64,
#      context 512/4096; one query token per sequence, so the backend runs
#      its split-KV decode kernel, as cuda's TestPlanDecodeCoversBenchmarks
#      checks; GB/s counts the K and V bytes read), sampling (batch 1/32/128, vocab 32000/128256)
#      and a full decode step, and prints a table of achieved bandwidth as
#      a fraction of the measured ceiling.
# Logs and the table go to $OUT/gpu/ (or bench/gpu/out/ without $OUT).
#
# With the session's device tool:
#   run(command="bash bench/gpu/check.sh run", carry=["bench/gpu/bin"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=bench/gpu/bin

build() {
	set -e
	export GOFLAGS=${GOFLAGS:--mod=mod}
	mkdir -p "$bin"
	if [[ -d .git ]] && ! grep -qxF '/bench/gpu/bin/' .git/info/exclude 2>/dev/null; then
		echo '/bench/gpu/bin/' >>.git/info/exclude
	fi
	go test -tags cuda -c -ldflags='-s -w' -o "$bin/cuda.test" ./cuda/
	go build -tags cuda -ldflags='-s -w' -o "$bin/vserve" ./cmd/vserve
	ls -l "$bin"
	echo "built; now run on a GPU machine: bash bench/gpu/check.sh run (carry $bin)"
}

# find_cublas prints a directory holding libcublas.so.{13,12,11}.
find_cublas() {
	if [[ -n ${VSERVE_CUBLAS_DIR:-} ]]; then
		echo "$VSERVE_CUBLAS_DIR"
		return
	fi
	local dirs=() d f
	if command -v python3 >/dev/null; then
		mapfile -t dirs < <(python3 -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
	fi
	dirs+=(/usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/local/lib)
	for major in 13 12 11; do
		for d in "${dirs[@]}"; do
			[[ -d $d ]] || continue
			f=$(find "$d" -maxdepth 5 -name "libcublas.so.$major" 2>/dev/null | head -1)
			if [[ -n $f ]]; then
				dirname "$f"
				return
			fi
		done
	done
}

# serve_greedy starts vserve on port $1 with the remaining flags, asks for
# greedy completions and prints the generated texts, one per line.
serve_greedy() {
	local port=$1
	shift
	"$bin/vserve" --port "$port" --host 127.0.0.1 --cache-dir "$work/cache" --max-num-seqs 8 --kv-cache-memory 256MiB --stats-interval 0 "$@" \
		>"$work/vserve-$port.log" 2>&1 &
	local pid=$!
	python3 - "$port" <<'EOF'
import json, sys, time, urllib.request
port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        if urllib.request.urlopen(base + "/health", timeout=1).status == 200:
            break
    except Exception:
        time.sleep(0.1)
else:
    print("vserve did not become healthy", file=sys.stderr)
    sys.exit(1)
prompts = [[1, 5, 9], [1, 100, 200, 300, 7, 8, 9, 10, 11, 12], list(range(1, 60))]
for p in prompts:
    body = json.dumps({"model": "vserve-tiny-random", "prompt": p, "max_tokens": 32, "temperature": 0,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    out = json.load(urllib.request.urlopen(req, timeout=60))
    print(json.dumps(out["choices"][0]["text"]))
EOF
	local rc=$?
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return $rc
}

run() {
	local out=${OUT:-bench/gpu/out}/gpu
	mkdir -p "$out"
	work=$(mktemp -d)
	[[ -x $bin/cuda.test && -x $bin/vserve ]] || { echo "missing $bin binaries: run 'check.sh build' first" >&2; exit 1; }
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/table.md"
	VSERVE_CUBLAS_DIR=$(find_cublas)
	export VSERVE_CUBLAS_DIR
	echo "cuBLAS from: ${VSERVE_CUBLAS_DIR:-the dynamic loader path}" | tee -a "$out/table.md"
	local status=0

	echo "== tests"
	KERNELTEST_SEED=random timeout 240 "$bin/cuda.test" -test.v -test.timeout 230s 2>&1 | tee "$out/test.log" |
		grep -E '^(=== RUN|--- FAIL|FAIL|ok|PASS)|greedy tokens|normalised error|seed|cuBLAS' | grep -v '=== RUN'
	[[ ${PIPESTATUS[0]} == 0 ]] || { echo "TESTS FAILED (see test.log)"; status=1; }

	echo "== serving: vserve built-in random model, greedy, GPU vs CPU"
	if serve_greedy 18101 --device cpu >"$work/cpu.txt" &&
		VSERVE_CUDA_DTYPE=f32 serve_greedy 18102 --device cuda >"$work/cuda-f32.txt" &&
		VSERVE_CUDA_DTYPE=bf16 serve_greedy 18103 --device cuda >"$work/cuda-bf16.txt" &&
		[[ -s $work/cpu.txt ]]; then
		local v
		for v in f32 bf16; do
			if cmp -s "$work/cpu.txt" "$work/cuda-$v.txt"; then
				echo "serve cuda/$v: greedy completions identical to cpu" | tee -a "$out/table.md"
			else
				echo "serve cuda/$v: greedy completions DIFFER from cpu" | tee -a "$out/table.md"
				[[ $v == f32 ]] && status=1
			fi
		done
	else
		echo "SERVING FAILED (see serve.log)" | tee -a "$out/table.md"
		status=1
	fi
	cat "$work"/*.txt "$work"/vserve-*.log >"$out/serve.log" 2>/dev/null

	echo "== benchmarks"
	# One run per family: -test.bench splits its pattern at each '/' into
	# one pattern per sub-benchmark level, so families cannot be OR-ed.
	: >"$out/bench.log"
	local pat
	for pat in 'ReadBandwidth|GemmBF16' 'PagedAttention/cuda/llama8B/decode' 'Sample/cuda/(greedy|topk50-topp0.9)' 'DecodeStep'; do
		timeout 150 "$bin/cuda.test" -test.run '^$' -test.bench "$pat" -test.benchtime 300ms -test.timeout 140s 2>&1 |
			tee -a "$out/bench.log" | grep -E '^(Benchmark|FAIL|ok)'
	done
	table "$out/bench.log" | tee -a "$out/table.md"
	rm -rf "$work"
	return $status
}

# table summarises bench.log: attention bandwidth against the read
# ceiling, sampling latency against the 0.15 ms target, GEMM and decode step.
table() {
	awk '
	function metric(unit,   i) { for (i = 3; i < NF; i++) if ($(i+1) == unit) return $i; return "" }
	/^BenchmarkReadBandwidth/ { ceil = metric("GB/s") }
	/^BenchmarkGemmBF16/ { n = $1; sub(/-[0-9]+$/, "", n); gemm[n] = metric("TFLOP/s") }
	/^BenchmarkPagedAttention/ { n = $1; sub(/-[0-9]+$/, "", n); sub(/.*decode\//, "", n); att[++na] = n; attbw[n] = metric("GB/s"); attns[n] = metric("ns/op") }
	/^BenchmarkSample/ { n = $1; sub(/-[0-9]+$/, "", n); sub(/^BenchmarkSample\/cuda\//, "", n); smp[++ns] = n; smpns[n] = metric("ns/op") }
	/^BenchmarkDecodeStep/ { n = $1; sub(/-[0-9]+$/, "", n); sub(/.*shape\//, "", n); dec[++nd] = n; decms[n] = metric("ms/step") }
	END {
		printf "\nHBM read ceiling: %s GB/s\n", ceil
		for (g in gemm) printf "bf16 GEMM %s: %s TFLOP/s\n", g, gemm[g]
		printf "\n| paged decode attention (32q/8kv/128d bf16 bs16, split-KV decode kernel) | us | KV GB/s | of ceiling |\n|---|---|---|---|\n"
		for (i = 1; i <= na; i++) { n = att[i]; printf "| %s | %.1f | %s | %.0f%% |\n", n, attns[n]/1000, attbw[n], (ceil > 0 ? 100*attbw[n]/ceil : 0) }
		n = "b64/ctx4096"
		if (n in attbw && ceil > 0) printf "decode attention %s: %.0f%% of the read ceiling (target 80%%): %s\n", n, 100*attbw[n]/ceil, (attbw[n] >= 0.8*ceil ? "met" : "MISSED")
		printf "\n| sampling | ms |\n|---|---|\n"
		for (i = 1; i <= ns; i++) { n = smp[i]; printf "| %s | %.3f |\n", n, smpns[n]/1e6 }
		printf "\ntargets: decode attention b64/ctx4096 >= 80%% of ceiling; topk50-topp0.9/b128/v128256 <= 0.15 ms\n"
		printf "\n| decode step (8B layer shape, random weights) | ms |\n|---|---|\n"
		for (i = 1; i <= nd; i++) { n = dec[i]; printf "| %s | %s |\n", n, decms[n] }
	}' "$1"
}

case ${1:-} in
build) build ;;
run) run ;;
*)
	echo "usage: $0 build|run" >&2
	exit 2
	;;
esac
