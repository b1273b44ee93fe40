#!/usr/bin/env bash
# Robustness, after the main build and tests: the suite under ASan+UBSan,
# the wire and fault tests under valgrind memcheck, libFuzzer on
# SMTPChannel for FUZZ_TIME seconds, then the long fault tests
# (tests/stress). Each part has its own time bound; any failure fails CI.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
pkgs="clang libclang-rt-14-dev valgrind"
if ! apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

jobs=$(nproc)
[ "$jobs" -le 2 ] || jobs=2

echo "== asan-test (ASan + UBSan, every backend)"
timeout 600 make -j"$jobs" asan-test

echo "== valgrind-test (memcheck)"
timeout 600 make -j"$jobs" valgrind-test

echo "== fuzz (${FUZZ_TIME:-120} s)"
timeout 480 make -j"$jobs" fuzz FUZZ_TIME="${FUZZ_TIME:-120}"

echo "== stress"
timeout 420 make stress
