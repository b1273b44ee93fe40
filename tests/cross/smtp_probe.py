#!/usr/bin/env python3
"""Talks one short SMTP session to a server that is starting up.

Usage: smtp_probe.py HOST PORT [SECONDS]

Retries the connection until SECONDS (default 10) have passed, then reads
the greeting, sends EHLO and QUIT, and prints the greeting line. Exit 0 if
the greeting was a 220 and EHLO got a 250; 1 otherwise. Standard library
only; talks to loopback addresses only.
"""
import socket
import sys
import time


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line.decode('utf-8', 'replace').rstrip('\r\n'))
        if len(line) < 4 or line[3:4] != b'-':
            break
    return lines


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    deadline = time.monotonic() + limit
    sock = None
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    if sock is None:
        print('probe: no server listening on %s port %d' % (host, port))
        return 1
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    f = sock.makefile('rb')
    greeting = read_reply(f)
    sock.sendall(b'EHLO probe.example\r\n')
    ehlo = read_reply(f)
    sock.sendall(b'QUIT\r\n')
    read_reply(f)
    sock.close()
    print(greeting[0] if greeting else '(no greeting)')
    ok = greeting and greeting[-1].startswith('220 ') and \
        ehlo and ehlo[-1].startswith('250 ')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
