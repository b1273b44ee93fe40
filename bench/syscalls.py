#!/usr/bin/env python3
"""syscalls: system calls per message of a server, counted by strace -c.

    python3 bench/syscalls.py -w conc-keep              # build/smtpd
    python3 bench/syscalls.py -w conc-conn -c smtp-sink

strace is attached only while smtp-source runs, so startup is not counted.
strace slows every call down: read the counts, not the times.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in bench/
import run_bench  # noqa: E402
from callgrind import LOADS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-w", "--workload", default="conc-keep", choices=sorted(LOADS))
    ap.add_argument("-m", "--messages", type=int, default=2000)
    ap.add_argument("-c", "--contender", default="smtpd")
    ap.add_argument("--smtpd", default=os.path.join(run_bench.ROOT, "build", "smtpd"))
    args = ap.parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    contenders = run_bench.known_contenders(args.smtpd)
    if args.contender not in contenders:
        sys.exit("unknown contender; have: " + ", ".join(sorted(contenders)))
    opts, _, size = LOADS[args.workload]
    msgs = args.messages if args.workload != "big" else min(args.messages, 50)
    logdir = tempfile.mkdtemp(prefix="smtpd-syscalls-")
    out = os.path.join(logdir, "strace.txt")
    server = run_bench.Server(contenders[args.contender], logdir)
    server.start()
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(server.pid)],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # let strace attach
        subprocess.run(["smtp-source"] + opts + ["-m", str(msgs), "-l", str(size),
                                                 "127.0.0.1:%d" % server.port],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)
        time.sleep(0.2)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        server.stop()
    print("%s, %s, %d messages of %d bytes: calls per message" % (
        args.contender, args.workload, msgs, size))
    total = 0.0
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls = int(parts[3])
                total += calls / msgs
                print("  %-14s %8.2f" % (parts[-1], calls / msgs))
    print("  %-14s %8.2f" % ("total", total))


if __name__ == "__main__":
    main()
