#!/usr/bin/env bash
# Cross builds (docs/portability.md): the static smtpd and its GoogleTest
# suite for 32-bit ARM (armhf) and big-endian MIPS, run under qemu-user:
# static checks, the suite and the conformance check on every poller.
# One "cross-test ARCH: ..." line per arch. Bounded to 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== cross: installing toolchains and qemu-user-static"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends \
  g++-arm-linux-gnueabihf g++-mips-linux-gnu qemu-user-static \
  libgtest-dev >/dev/null

timeout 1200 make --no-print-directory -j2 cross-test-all \
  CROSS_ARCHS="armhf mips"
