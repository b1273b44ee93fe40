#!/bin/sh
# Runs the GoogleTest binary once per poller backend and sums the results
# into one closing line: "N passed, M failed".
# Usage: tests/run_suite.sh path/to/smtpd_tests [extra gtest args]
bin=$1; shift
backends=${SMTPD_POLLERS:-"epoll poll select"}
passed=0; failed=0; status=0
for b in $backends; do
  echo "== SMTPD_POLLER=$b"
  out=$(mktemp)
  SMTPD_POLLER=$b "$bin" "$@" 2>&1 | tee "$out"
  ok=$(grep -c '^\[       OK \]' "$out")
  bad=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$out")
  # gtest lists each failure twice (once as it runs, once in the summary).
  bad=$((bad / 2))
  grep -q '^\[  PASSED  \]' "$out" || { [ "$bad" -eq 0 ] && bad=1; }
  passed=$((passed + ok)); failed=$((failed + bad))
  [ "$bad" -eq 0 ] || status=1
  rm -f "$out"
done
echo "$passed passed, $failed failed"
exit $status
