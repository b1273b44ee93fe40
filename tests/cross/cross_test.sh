#!/bin/sh
# Cross-builds the static smtpd and its GoogleTest suite with Debian's
# cross compiler for ARCH, then runs them under qemu-user: the static
# checks (tests/cross/static_check.sh), the suite on every poller, and the
# shared conformance check on every poller. qemu-user runs the guest's
# system calls on this kernel, so sockets are on this host's loopback and
# the harness sees them in /proc/net/tcp.
#
# Usage: tests/cross/cross_test.sh [--build-only] ARCH...
#   ARCH: armhf, arm64, mips (big-endian), mipsel
# Output: a timed line per phase, one "cross-test ARCH: ..." line per arch,
# then "N passed, M failed" over every check of every arch.
# Needs: g++-<triplet>, qemu-user-static, libgtest-dev (for its sources).

make=${MAKE:-make}
build_only=0
if [ "$1" = --build-only ]; then build_only=1; shift; fi
[ $# -gt 0 ] || { echo "usage: $0 [--build-only] ARCH..." >&2; exit 2; }

total_passed=0
total_failed=0
status=0
summaries=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

now() { date +%s; }

# counts LOG: sums every "N passed, M failed" line of LOG into $p and $f.
counts() {
  p=0; f=0
  for pair in $(sed -n \
      's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*$/\1:\2/p' "$1"); do
    p=$((p + ${pair%%:*})); f=$((f + ${pair##*:}))
  done
}

# phase NAME MAKEARGS...: runs make, prints its output and a timed line;
# adds its counts to the arch's. A phase that fails without printing any
# count counts as one failure.
phase() {
  name=$1; shift
  start=$(now)
  $make --no-print-directory $vars "$@" >"$log" 2>&1
  rc=$?
  # All of a failed phase's output; of a passed one, the headings, the
  # static checks and the counts.
  if [ $rc -ne 0 ]; then
    cat "$log"
  else
    grep -E '^(== |ok - |skip - |[0-9]+ passed, |static: )' "$log"
  fi
  counts "$log"
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  secs=$(($(now) - start))
  echo "-- $arch $name: exit $rc, $p passed, $f failed, ${secs} s"
  arch_passed=$((arch_passed + p)); arch_failed=$((arch_failed + f))
  if [ $((p + f)) -gt 0 ]; then
    detail="$detail; $name $p/$((p + f)) ${secs}s"
  elif [ $rc -eq 0 ]; then
    detail="$detail; $name ok ${secs}s"
  fi
}

for arch in "$@"; do
  extra=""
  case $arch in
  # -Wno-psabi: GCC notes that std::vector<T>::iterator was passed
  # differently before GCC 7.1; moot for a binary linked all at once.
  armhf)  triplet=arm-linux-gnueabihf; qemu=qemu-arm-static
          extra=-Wno-psabi ;;
  arm64)  triplet=aarch64-linux-gnu;   qemu=qemu-aarch64-static ;;
  mips)   triplet=mips-linux-gnu;      qemu=qemu-mips-static ;;
  mipsel) triplet=mipsel-linux-gnu;    qemu=qemu-mipsel-static ;;
  *) echo "cross-test $arch: unknown ARCH (armhf, arm64, mips, mipsel)"
     status=1; total_failed=$((total_failed + 1)); continue ;;
  esac
  missing=""
  command -v "$triplet-g++" >/dev/null || missing="$missing g++-$triplet"
  [ $build_only = 1 ] || command -v "$qemu" >/dev/null ||
    missing="$missing qemu-user-static"
  if [ -n "$missing" ]; then
    echo "cross-test $arch: FAILED: not installed:$missing"
    status=1; total_failed=$((total_failed + 1)); continue
  fi

  echo "== cross-test $arch ($triplet, $qemu)"
  # The 1 MiB budget is for x86-64; other targets get a looser bound.
  max_bytes=${CROSS_MAX_BYTES:-2097152}
  vars="BUILD=build-$arch CXX=$triplet-g++ AR=$triplet-ar"
  vars="$vars STRIP=$triplet-strip STATIC_GTEST=source STATIC_RUNNER=$qemu"
  vars="$vars STATIC_EXTRA_CXXFLAGS=$extra"
  arch_passed=0; arch_failed=0; detail=""
  arch_start=$(now)

  phase build static static-tests
  size=$(wc -c < "build-$arch/smtpd-static" 2>/dev/null || echo 0)
  if [ $build_only = 0 ] && [ "$f" -eq 0 ]; then
    phase size static-size-check STATIC_MAX_BYTES=$max_bytes
    phase static-check static-check
    phase gtest static-test
    phase conformance static-conformance
  fi

  secs=$(($(now) - arch_start))
  verdict=ok; [ $arch_failed -eq 0 ] || { verdict=FAILED; status=1; }
  line="cross-test $arch: $verdict, $arch_passed passed, $arch_failed failed"
  line="$line, static binary $size bytes, ${secs} s$detail"
  echo "$line"
  summaries="$summaries$line
"
  total_passed=$((total_passed + arch_passed))
  total_failed=$((total_failed + arch_failed))
done

[ $# -le 1 ] || printf '%s' "$summaries"
echo "$total_passed passed, $total_failed failed"
exit $status
