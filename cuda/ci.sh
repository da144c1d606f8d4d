#!/usr/bin/env bash
# cuda/ci.sh: the CUDA build's checks for plain CI (no GPU, no driver).
#
#   1. installs the CUDA 11.8 toolkit from Debian (contrib non-free) when
#      nvcc is missing (needs root and apt);
#   2. vets the cuda-tagged packages (cuda/ and every package importing it);
#   3. compiles their test and benchmark binaries (they cannot run here:
#      gorgonia.org/cu exits at init without a driver);
#   4. runs the kernels on the CPU through cuda/kernels/emu (an emulation of
#      the CUDA execution model) against plain references, and the whole
#      backend with the emulated kernels (-tags cudaemu) through the
#      conformance suite (its Sample cases excepted: thousands of 1024-thread
#      blocks), against runtime/sample, and the decode path against a
#      float64 reference (TestDecodePath);
#   5. checks that the committed kernel images (cuda/kernels/*.fatbin) are
#      up to date: the source hashes recorded in BUILD_INFO must match the
#      sources, and when the local nvcc is the one recorded, a regeneration
#      into a temporary directory must be byte-identical. With another nvcc
#      the kernels are still compiled (to prove they build) but not
#      compared, since the bytes legitimately differ between releases.
#
# Idempotent; prints one line per step unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--mod=mod}

log() { printf 'cuda/ci: %s\n' "$*"; }

add_debian_components() {
	local f=/etc/apt/sources.list.d/debian.sources
	if [[ -f $f ]]; then
		# deb822: extend every Components line that lacks contrib.
		sed -i '/^Components:/{/contrib/!s/$/ contrib non-free/}' "$f"
	fi
	if [[ -f /etc/apt/sources.list ]]; then
		sed -i -E '/^deb .*debian/{/contrib/!s/$/ contrib non-free/}' /etc/apt/sources.list
	fi
}

ensure_nvcc() {
	if command -v nvcc >/dev/null; then return; fi
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		echo "cuda/ci: nvcc missing and cannot install it (needs root and apt-get)" >&2
		exit 1
	fi
	log "installing nvidia-cuda-toolkit (CUDA 11.8) from Debian contrib/non-free"
	add_debian_components
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nvidia-cuda-toolkit >/tmp/cuda-ci-apt.log 2>&1 ||
		{ tail -20 /tmp/cuda-ci-apt.log >&2; exit 1; }
}

cuda_packages() {
	# cuda/... and the packages importing github.com/vserve/vserve/cuda.
	go list -tags cuda -e -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... |
		awk '$1 ~ /\/cuda(\/|$)/ { print $1; next }
		     { for (i = 2; i <= NF; i++) if ($i == "github.com/vserve/vserve/cuda") { print $1; break } }' | sort -u
}

check_kernels() {
	local info=cuda/kernels/BUILD_INFO
	[[ -f $info ]] || { echo "cuda/ci: $info missing: run go generate ./cuda/..." >&2; exit 1; }
	local want got
	want=$(grep -E '^[0-9a-f]{64} ' "$info")
	got=$(cd cuda/kernels && sha256sum *.cu *.cuh | LC_ALL=C sort -k2)
	if [[ $want != "$got" ]]; then
		echo "cuda/ci: kernel sources changed since the images were generated: run go generate ./cuda/..." >&2
		diff <(echo "$want") <(echo "$got") >&2 || true
		exit 1
	fi
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	bash cuda/kernels/gen.sh "$tmp"
	local recorded local_version
	recorded=$(sed -n 's/^nvcc //p' "$info")
	local_version=$(sed -n 's/^nvcc //p' "$tmp/BUILD_INFO")
	if [[ $recorded != "$local_version" ]]; then
		log "kernels compile with nvcc $local_version; images were made by nvcc $recorded: sources match, bytes not compared"
		return
	fi
	local f stale=0
	for f in cuda/kernels/*.fatbin "$tmp"/*.fatbin; do
		local b
		b=$(basename "$f")
		if ! cmp -s "cuda/kernels/$b" "$tmp/$b"; then
			echo "cuda/ci: cuda/kernels/$b is stale or extra: run go generate ./cuda/..." >&2
			stale=1
		fi
	done
	[[ $stale == 0 ]] || exit 1
	log "kernel images up to date (nvcc $local_version)"
}

ensure_nvcc
# The kernels' logic on the CPU (emulated CUDA execution model), alone and
# behind the whole Go backend (conformance suite, sampler vs runtime/sample).
bash cuda/kernels/emu/run.sh
go vet -tags cudaemu ./cuda/...
go test -count=1 -tags cudaemu -skip 'TestEmulatedConformance/.*/Sample' -run 'TestEmulated|TestDecodePath' ./cuda/
mapfile -t pkgs < <(cuda_packages)
log "vet -tags cuda: ${pkgs[*]}"
go vet -tags cuda "${pkgs[@]}"
for p in "${pkgs[@]}"; do
	if [[ -n $(go list -tags cuda -f '{{if or .TestGoFiles .XTestGoFiles}}x{{end}}' "$p") ]]; then
		go test -tags cuda -c -o /dev/null "$p"
	fi
done
log "test binaries compile"
check_kernels
