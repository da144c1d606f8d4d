#!/usr/bin/env bash
# End-to-end check with the official OpenAI Node client: builds vserve,
# serves ../shared/models/stories260K/hf on loopback, and runs openai_test.mjs
# (completions and chat, streaming and not). Not part of `go test ./...`;
# .ci/run calls it. Exits 0 with a message when ../shared, node or npm is
# absent. Needs the npm registry (or an npm cache) the first time.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shared="${VSERVE_SHARED:-$repo/../shared}"
model="$shared/models/stories260K/hf"
if [[ ! -d "$model" ]]; then
  echo "server/e2e/openai.sh: skipped: $model is absent (../shared is not in a fresh clone)"
  exit 0
fi
for tool in node npm go; do
  if ! command -v "$tool" >/dev/null; then
    echo "server/e2e/openai.sh: skipped: $tool is not installed"
    exit 0
  fi
done

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== installing the openai npm package into $work"
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent openai@^4 >/dev/null)
cp "$repo/server/e2e/openai_test.mjs" "$work/"

echo "== building vserve"
(cd "$repo" && go build -o "$work/vserve" ./cmd/vserve)

# A free loopback port: ask the kernel via a throwaway listener.
port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
key="e2e-$RANDOM$RANDOM"
"$work/vserve" --model "$model" --served-model-name stories260K --host 127.0.0.1 --port "$port" \
  --api-key "$key" --max-model-len 512 --stats-interval 0 >"$work/vserve.log" 2>&1 &
pid=$!

for _ in $(seq 1 100); do
  if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "http://127.0.0.1:$port/health"; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "vserve exited:"; cat "$work/vserve.log"; exit 1; fi
  sleep 0.1
done

echo "== running the OpenAI client against http://127.0.0.1:$port/v1"
if ! (cd "$work" && VSERVE_BASE_URL="http://127.0.0.1:$port/v1" VSERVE_API_KEY="$key" node openai_test.mjs); then
  echo "--- vserve log"; cat "$work/vserve.log"; exit 1
fi
kill -TERM "$pid"
wait "$pid"
pid=""
echo "== server/e2e/openai.sh: ok"
