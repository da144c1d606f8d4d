#!/usr/bin/env bash
# run.sh: compiles the CUDA kernels as C++20 against emu.h (no GPU, no CUDA
# toolkit needed) and runs emu_test.cpp's checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CXX=${CXX:-g++}
bin=$(mktemp -d)/emu_test
trap 'rm -rf "$(dirname "$bin")"' EXIT
"$CXX" -std=c++20 -O2 -pthread -w -I "$here/include" -o "$bin" "$here/emu_test.cpp"
"$bin"
