#!/bin/sh
# Prints the sizes of the three builds against their budgets, and what
# weighs most in each. Reports only; the budgets are enforced by
# `make static-check` (static) and by review (dynamic).
# Usage: tests/cross/size_report.sh BUILD DYNAMIC_MAX STATIC_MAX
#   BUILD holds smtpd (ordinary, unstripped), smtpd-small, smtpd-static.
build=$1
dyn_max=$2
static_max=$3
strip=${STRIP:-strip}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

verdict() {
  if [ "$1" -le "$2" ]; then echo "within $2"; else echo "OVER $2"; fi
}

cp "$build/smtpd" "$tmp" && $strip "$tmp"
plain=$(wc -c < "$tmp")
small=$(wc -c < "$build/smtpd-small")
static=$(wc -c < "$build/smtpd-static")
echo "size: $build/smtpd, stripped copy: $plain bytes" \
  "($(verdict "$plain" "$dyn_max"))"
echo "size: $build/smtpd-small (-Os, gc-sections, stripped): $small bytes" \
  "($(verdict "$small" "$dyn_max"))"
echo "size: $build/smtpd-static (static, -Os, stripped): $static bytes" \
  "($(verdict "$static" "$static_max"))"

echo "-- sections of the stripped ordinary build"
size -A "$tmp" | awk 'NR > 2 && $2 >= 1024 {printf "  %-20s %8d\n", $1, $2}'
echo "-- sections of the static build"
size -A "$build/smtpd-static" |
  awk 'NR > 2 && $2 >= 1024 {printf "  %-20s %8d\n", $1, $2}'
echo "-- 15 largest functions and objects in $build/smtpd"
nm -C -S --size-sort "$build/smtpd" | awk '$3 ~ /^[TtWwDdRr]$/ && !seen[$1]++' |
  tail -n 15 | while read -r addr sz kind name; do
    printf '  %6d %s\n' "0x$sz" "$(echo "$name" | cut -c1-100)"
  done
