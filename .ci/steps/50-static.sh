#!/usr/bin/env bash
# The static binary (docs/portability.md): build it and the small dynamic
# build, report sizes, hold the static one to its 1 MiB budget, prove it
# needs no NSS (empty environment; chroot with only /etc/passwd and
# /etc/hosts; drops to nobody), run the suite and the conformance check
# against it on every poller; then `make install` / `make install-static`
# and `make uninstall` into a DESTDIR. Every check runs; the step fails at
# the end, naming the checks that failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

failed=""
# check NAME CMD...: runs CMD, remembers NAME if it fails.
check() {
  local name=$1
  shift
  echo "== static: $name"
  if ! "$@"; then
    echo "-- static: $name FAILED"
    failed="$failed $name"
  fi
}

# install_check TARGET: TARGET into a DESTDIR lays out bin/smtpd and
# man8/smtpd.8 and nothing else; `make uninstall` removes both.
install_check() {
  local dest found want left
  dest=$(mktemp -d)
  make --no-print-directory "$1" DESTDIR="$dest" PREFIX=/usr/local || return 1
  found=$(cd "$dest" && find . -type f -o -type l | sort | tr '\n' ' ')
  want="./usr/local/bin/smtpd ./usr/local/share/man/man8/smtpd.8 "
  if [ "$found" != "$want" ]; then
    echo "$1: laid out '$found', expected '$want'"
    return 1
  fi
  [ "$(stat -c %a "$dest/usr/local/bin/smtpd")" = 755 ] || return 1
  [ "$(stat -c %a "$dest/usr/local/share/man/man8/smtpd.8")" = 644 ] || return 1
  "$dest/usr/local/bin/smtpd" --version || return 1
  make --no-print-directory uninstall DESTDIR="$dest" PREFIX=/usr/local ||
    return 1
  left=$(cd "$dest" && find . -type f -o -type l)
  if [ -n "$left" ]; then
    echo "uninstall after $1: left $left"
    return 1
  fi
  rm -rf "$dest"
  echo "$1: bin/smtpd (755) and man8/smtpd.8 (644); uninstall removed both"
}

check build make -j2 static small static-tests
check sizes make --no-print-directory size-report
check size-budget make --no-print-directory static-size-check
check no-nss make --no-print-directory static-check
check suite make --no-print-directory static-test
if [ -d ../shared/conformance ]; then
  check conformance make --no-print-directory static-conformance
fi
check install install_check install
check install-static install_check install-static

if [ -n "$failed" ]; then
  echo "static step: FAILED:$failed"
  exit 1
fi
echo "static step: every check passed"
