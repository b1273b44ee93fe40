#!/bin/sh
# Proves a static smtpd needs nothing from the system at run time: no
# dynamic loader, no NSS modules, no environment. Runs it with `env -i`,
# then (as root) chrooted into a directory holding only the binary,
# /etc/passwd and /etc/hosts, where it must resolve names from that
# /etc/hosts and, without -n, become `nobody' from that /etc/passwd.
#
# Usage: tests/cross/static_check.sh BIN [RUNNER]
#   RUNNER: an emulator for a foreign binary (e.g. qemu-arm-static); it
#   must itself be static, as it is copied into the chroot too.
# Ends with "N passed, M failed"; exit 1 if any check failed.
# Servers listen on loopback only and are stopped by PID.

bin=$1
runner=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
probe="python3 $here/smtp_probe.py"
passed=0
failed=0
pids=""
tmp=$(mktemp -d)

cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

ok() { echo "ok - $1"; passed=$((passed + 1)); }
bad() { echo "FAIL - $1"; failed=$((failed + 1)); }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# stop PID: SIGTERM, then SIGKILL after about 3 s.
stop() {
  kill "$1" 2>/dev/null
  i=0
  while kill -0 "$1" 2>/dev/null && [ $i -lt 30 ]; do
    sleep 0.1; i=$((i + 1))
  done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

# serve NAME HOST PROBEHOST PORT CMD...: start CMD, probe it, stop it.
# Leaves the greeting in $tmp/greeting and the server's stderr in $tmp/err.
serve() {
  name=$1; probehost=$2; port=$3; shift 3
  "$@" >/dev/null 2>"$tmp/err" &
  pid=$!; pids="$pids $pid"
  if $probe "$probehost" "$port" 10 >"$tmp/greeting"; then
    ok "$name: $(cat "$tmp/greeting")"
    served=1
  else
    bad "$name: $(cat "$tmp/greeting") $(head -c 300 "$tmp/err")"
    served=0
  fi
}

if [ ! -x "$bin" ]; then
  echo "usage: $0 BIN [RUNNER]" >&2
  exit 2
fi
run="$runner $bin"

# 1. Linked statically: no program interpreter, no shared libraries.
if readelf -lW "$bin" | grep -q INTERP; then
  bad "static link: $bin has a program interpreter"
elif readelf -dW "$bin" | grep -q NEEDED; then
  bad "static link: $bin needs shared libraries"
else
  ok "static link: no interpreter, no NEEDED entries"
fi

# 2. Runs in an empty environment.
if out=$(timeout 10 env -i $run --version 2>&1) &&
    echo "$out" | grep -q version; then
  ok "env -i --version: $out"
else
  bad "env -i --version: $out"
fi

# 3. Resolves "localhost" and numeric addresses with no environment.
port=$(free_port)
serve "env -i, localhost" 127.0.0.1 "$port" \
  env -i $run -n -c DebuggingServer "localhost:$port"
stop "$pid"
port=$(free_port)
serve "env -i, 127.0.0.1" 127.0.0.1 "$port" \
  env -i $run -n -c DebuggingServer "127.0.0.1:$port"
stop "$pid"
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' \
    2>/dev/null; then
  port=$(free_port)
  serve "env -i, [::1]" ::1 "$port" \
    env -i $run -n -c DebuggingServer "[::1]:$port"
  stop "$pid"
else
  echo "skip - [::1]: no IPv6 loopback here"
fi

# 4. An unknown name fails at once with a clear line, never hangs.
if timeout 10 env -i $run -n -c DebuggingServer no-such-host.invalid:8025 \
    >/dev/null 2>"$tmp/err"; then
  bad "unknown name: exited 0"
elif grep -q "no-such-host.invalid" "$tmp/err"; then
  ok "unknown name: $(head -n 1 "$tmp/err")"
else
  bad "unknown name: $(head -c 300 "$tmp/err")"
fi

# 5. In a chroot holding only the binary, /etc/passwd and /etc/hosts.
if [ "$(id -u)" != 0 ]; then
  echo "skip - chroot checks need root"
else
  root=$tmp/root
  mkdir -p "$root/etc"
  cp "$bin" "$root/smtpd"
  inside=/smtpd
  if [ -n "$runner" ]; then
    cp "$(command -v "$runner")" "$root/runner"
    inside="/runner /smtpd"
  fi
  host=$(uname -n)
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >> "$root/etc/passwd"
  {
    printf '127.0.0.1\tlocalhost\n'
    printf '127.0.0.1\tsmtpd-static-test\n'
    printf '127.0.1.1\t%s.static-test.example %s\n' "$host" "$host"
  } > "$root/etc/hosts"
  chroot=$(command -v chroot)
  echo "chroot contents: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"

  # A name only the chroot's /etc/hosts knows; the greeting's fqdn
  # comes from there too (unless the host name already has a dot).
  port=$(free_port)
  serve "chroot, name from /etc/hosts" 127.0.0.1 "$port" \
    env -i "$chroot" "$root" $inside -n -c DebuggingServer \
    "smtpd-static-test:$port"
  stop "$pid"
  case $host in
  *.*) echo "skip - fqdn from /etc/hosts: host name $host has a dot" ;;
  *)
    if [ "$served" = 1 ] &&
        grep -q "^220 $host.static-test.example " "$tmp/greeting"; then
      ok "chroot, fqdn from /etc/hosts: $host.static-test.example"
    else
      bad "chroot, fqdn from /etc/hosts: $(cat "$tmp/greeting")"
    fi ;;
  esac

  # Without -n, as root: binds, then becomes nobody (65534).
  port=$(free_port)
  serve "chroot, as root without -n" 127.0.0.1 "$port" \
    env -i "$chroot" "$root" $inside -c DebuggingServer "localhost:$port"
  uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status" 2>/dev/null)
  gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status" 2>/dev/null)
  groups=$(awk '/^Groups:/ {$1 = ""; print}' "/proc/$pid/status" 2>/dev/null)
  stop "$pid"
  if [ "$uids" = "65534 65534 65534 65534" ] &&
      [ "$gids" = "65534 65534 65534 65534" ] &&
      [ "$(echo $groups)" = 65534 ]; then
    ok "chroot, dropped to nobody: uid $uids, gid $gids, groups$groups"
  else
    bad "chroot, dropped to nobody: uid '$uids' gid '$gids' groups '$groups'"
  fi

  # No nobody in /etc/passwd: the reference's refusal, exit 1.
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  port=$(free_port)
  if timeout 10 env -i "$chroot" "$root" $inside -c DebuggingServer \
      "localhost:$port" >/dev/null 2>"$tmp/err"; then
    bad "chroot, no nobody: exited 0"
  elif grep -q 'Cannot setuid "nobody"' "$tmp/err"; then
    ok "chroot, no nobody: $(head -n 1 "$tmp/err")"
  else
    bad "chroot, no nobody: $(head -c 300 "$tmp/err")"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
