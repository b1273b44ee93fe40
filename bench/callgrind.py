#!/usr/bin/env python3
"""callgrind: instructions per message of an smtpd binary, deterministically.

Runs the server under `valgrind --tool=callgrind` twice: once idle (start,
one HELO..QUIT, SIGTERM) and once under an smtp-source load. The difference
divided by the messages is the instruction count per message, free of
startup cost; it does not depend on what else the machine is doing. The
load run's profile is kept and its top functions printed.

    python3 bench/callgrind.py -w conc-keep            # build/smtpd
    python3 bench/callgrind.py -w big --smtpd /tmp/perf-build/smtpd

Workloads: conc-keep (20 kept sessions, 2 KiB), conc-conn (20 sessions, a
connection per message, 2 KiB), big (2 sessions, 1 MiB), seq (1 session).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in bench/
import run_bench  # noqa: E402  (Server, free ports, the greeting wait)

LOADS = {  # name: (smtp-source options, default messages, size)
    "conc-keep": (["-s", "20", "-d"], 4000, 2048),
    "conc-conn": (["-s", "20"], 2000, 2048),
    "seq": (["-s", "1", "-d"], 2000, 2048),
    "big": (["-s", "2", "-d"], 20, 1048576),
}


def profile(binary, args, outdir, tag, load=None):
    """Runs one server under callgrind; returns (total Ir, output file)."""
    out = os.path.join(outdir, "callgrind.%s.out" % tag)
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
    argv += args.valgrind_opts.split() if args.valgrind_opts else []
    argv += [binary, "-n", "-c", args.server_class, "127.0.0.1:{port}"]
    c = run_bench.Contender("callgrind", argv)
    s = run_bench.Server(c, outdir)
    try:
        s.start(timeout=60)
        if load:
            opts, msgs, size = load
            cmd = ["smtp-source"] + opts + ["-m", str(msgs), "-l", str(size),
                                            "127.0.0.1:%d" % s.port]
            r = subprocess.run(cmd, timeout=args.timeout, stdout=subprocess.DEVNULL)
            if r.returncode != 0:
                raise RuntimeError("smtp-source failed: %d" % r.returncode)
    finally:
        stop(s)
    return total_ir(out), out


def stop(server):
    """SIGTERM and wait long enough for callgrind to write its profile."""
    import signal
    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.alive():
        time.sleep(0.05)
    server.stop()


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + path)


def annotate(path, top, inclusive):
    argv = ["callgrind_annotate", "--threshold=99"]
    if inclusive:
        argv.append("--inclusive=yes")
    text = subprocess.run(argv + [path], capture_output=True, text=True).stdout
    rows = [l for l in text.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
    return "\n".join(rows[:top])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-w", "--workload", default="conc-keep", choices=sorted(LOADS))
    ap.add_argument("-m", "--messages", type=int)
    ap.add_argument("--smtpd", default=os.path.join(run_bench.ROOT, "build", "smtpd"))
    ap.add_argument("--server-class", default="DebuggingServer")
    ap.add_argument("--out", help="folder for the profiles (default: a temp dir)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--valgrind-opts", default="")
    args = ap.parse_args()
    opts, msgs, size = LOADS[args.workload]
    msgs = args.messages or msgs
    outdir = args.out or tempfile.mkdtemp(prefix="smtpd-callgrind-")
    os.makedirs(outdir, exist_ok=True)
    os.environ["PATH"] += ":/usr/sbin"
    binary = os.path.abspath(args.smtpd)
    idle, _ = profile(binary, args, outdir, "idle")
    busy, path = profile(binary, args, outdir, args.workload, (opts, msgs, size))
    per = (busy - idle) / msgs
    print("binary        %s" % binary)
    print("workload      %s, %d messages of %d bytes" % (args.workload, msgs, size))
    print("Ir idle run   {:,}".format(idle))
    print("Ir load run   {:,}".format(busy))
    print("Ir per message {:,.0f}".format(per) +
          ("  ({:,.0f} per KiB)".format(per / (size / 1024)) if size > 4096 else ""))
    print("profile       %s" % path)
    print("\n-- top functions, self --")
    print(annotate(path, args.top, False))
    print("\n-- top functions, inclusive --")
    print(annotate(path, args.top, True))


if __name__ == "__main__":
    main()
