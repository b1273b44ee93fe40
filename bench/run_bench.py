#!/usr/bin/env python3
"""run_bench: smtpd against its peers, side by side, in one run.

Every contender (build/smtpd and whichever of Python's smtpd, aiosmtpd and
Postfix's smtp-sink are installed) goes through the same workloads. Each
measurement gets a freshly started server; the contenders take turns, in an
order rotated every repeat, so slow drift on a shared machine hits them all.
The tables give medians, the spread, ratios against smtp-sink and the
issue's targets.

Load: Postfix smtp-source for the message workloads; small clients of our
own (below) for idle connections, session latency and startup. Server CPU is
read from /proc/PID/task/*/schedstat (nanoseconds), summed over the server's
process tree, so `-j N` workers count too. Python 3 standard library only.

    python3 bench/run_bench.py --quick          # about a minute
    python3 bench/run_bench.py --json b.json --md b.md
    python3 bench/run_bench.py -w conc-keep,big -c smtpd,smtp-sink --repeat 5
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PIN = None  # (server CPU, client CPU) with --pin
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ------------------------------------------------------------------ contenders

class Contender:
    """A server command; {port} is replaced by the port to listen on."""

    def __init__(self, name, argv, env=None, note=""):
        self.name = name
        self.argv = argv
        self.env = env or {}
        self.note = note

    def command(self, port):
        return [a.replace("{port}", str(port)) for a in self.argv]

    def shown(self):
        return " ".join(self.argv)


def python_with(module):
    """A Python interpreter (a real binary, not a pyenv shim) that imports
    `module`, or None."""
    seen = []
    for exe in ("/usr/bin/python3.11", os.path.realpath(sys.executable),
                shutil.which("python3.11") or ""):
        exe = os.path.realpath(exe) if exe else ""
        if not exe or exe in seen or not os.access(exe, os.X_OK):
            continue
        seen.append(exe)
        probe = subprocess.run([exe, "-W", "ignore", "-c", "import " + module],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            return exe
    return None


def known_contenders(smtpd_bin):
    """Every contender this machine can run, by name."""
    out = {}
    smtpd_bin = os.path.abspath(smtpd_bin)
    if os.access(smtpd_bin, os.X_OK):
        out["smtpd"] = Contender(
            "smtpd", [smtpd_bin, "-n", "-c", "DebuggingServer",
                      "127.0.0.1:{port}"], note="this project, stdout to /dev/null")
        out["smtpd-j2"] = Contender(
            "smtpd-j2", [smtpd_bin, "-n", "-j", "2", "-c", "DebuggingServer",
                         "127.0.0.1:{port}"], note="2 worker processes (SO_REUSEPORT)")
    static = os.path.join(os.path.dirname(smtpd_bin), "smtpd-static")
    if os.access(static, os.X_OK):
        out["smtpd-static"] = Contender(
            "smtpd-static", [static, "-n", "-c", "DebuggingServer",
                             "127.0.0.1:{port}"], note="make static")
    py = python_with("smtpd")
    if py:
        env = {"PYTHONPATH": HERE, "PYTHONDONTWRITEBYTECODE": "1"}
        out["python-smtpd"] = Contender(
            "python-smtpd", [py, "-W", "ignore", "-m", "smtpd", "-n", "-c",
                             "benchsink.Sink", "127.0.0.1:{port}"], env,
            "the reference, process_message returns None")
        out["python-smtpd-debug"] = Contender(
            "python-smtpd-debug", [py, "-W", "ignore", "-m", "smtpd", "-n",
                                   "-c", "DebuggingServer", "127.0.0.1:{port}"],
            env, "the reference with -c DebuggingServer, stdout to /dev/null")
    py = python_with("aiosmtpd")
    if py:
        out["aiosmtpd"] = Contender(
            "aiosmtpd", [py, "-m", "aiosmtpd", "-n", "-c",
                         "aiosmtpd.handlers.Sink", "-l", "127.0.0.1:{port}"])
    sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None)
    if sink:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        out["smtp-sink"] = Contender(
            "smtp-sink", [sink] + user + ["-a", "-C", "-E", "-F", "-N", "-p",
                                          "-m", "20000", "-t", "600",
                                          "127.0.0.1:{port}", "1024"],
            note="Postfix smtp-sink, native event loop")
    return out


DEFAULT_ORDER = ["python-smtpd", "aiosmtpd", "smtp-sink", "smtpd", "smtpd-static"]


# ------------------------------------------------------------------ the server

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_file(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def children_of(pid):
    """Descendants of `pid`, from /proc (for -j N workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read_file("/proc/%s/stat" % entry)
        if stat:
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for kid in parents.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


class Server:
    """One fresh server process, with its stdout at /dev/null."""

    def __init__(self, contender, logdir):
        self.contender = contender
        self.port = free_port()
        self.log = os.path.join(logdir, "%s-%d.log" % (contender.name, self.port))
        self.pid = None
        self.tree = []
        self.t_spawn = None

    def spawn(self):
        argv = self.contender.command(self.port)
        env = dict(os.environ)
        env.update(self.contender.env)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, self.log,
             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        ]
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0]) or argv[0]
        if PIN:  # the server inherits its CPU; we go back to ours after
            os.sched_setaffinity(0, {PIN[0]})
        self.t_spawn = time.perf_counter()
        try:
            self.pid = os.posix_spawn(exe, argv, env, file_actions=actions,
                                      setsigdef=(signal.SIGTERM, signal.SIGINT))
        finally:
            if PIN:
                os.sched_setaffinity(0, {PIN[1]})

    def start(self, timeout=30.0):
        self.spawn()
        self.wait_greeting(timeout)
        self.tree = [self.pid] + children_of(self.pid)

    def wait_greeting(self, timeout):
        """Connects until the greeting arrives; returns the time of it."""
        deadline = time.perf_counter() + timeout
        while True:
            if not self.alive():
                raise RuntimeError("%s exited at start: %s" % (
                    self.contender.name, self.log_tail()))
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", self.port))
                s.settimeout(timeout)
                line = Lines(s).line()
                t = time.perf_counter()
                if not line.startswith(b"220"):
                    raise RuntimeError("bad greeting %r" % line)
                s.sendall(b"QUIT\r\n")
                return t
            except ConnectionRefusedError:
                if time.perf_counter() > deadline:
                    raise RuntimeError("%s never listened" % self.contender.name)
                # A short nap leaves the CPU to the server that is starting.
                time.sleep(0.00005 if time.perf_counter() - self.t_spawn < 0.1
                           else 0.001)
            finally:
                s.close()

    def alive(self):
        if self.pid is None:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def cpu(self):
        """(nanoseconds on CPU, user ticks, system ticks) of the tree."""
        ns = ut = st = 0
        for pid in self.tree:
            stat = read_file("/proc/%d/stat" % pid)
            if not stat:
                continue
            f = stat[stat.rfind(")") + 2:].split()
            ut += int(f[11])
            st += int(f[12])
            try:
                tasks = os.listdir("/proc/%d/task" % pid)
            except OSError:
                continue
            for t in tasks:
                s = read_file("/proc/%d/task/%s/schedstat" % (pid, t))
                if s:
                    ns += int(s.split()[0])
        return ns, ut, st

    def memory(self):
        """(VmRSS KiB, VmHWM KiB) summed over the tree."""
        rss = hwm = 0
        for pid in self.tree:
            status = read_file("/proc/%d/status" % pid) or ""
            m = re.search(r"VmRSS:\s+(\d+)", status)
            h = re.search(r"VmHWM:\s+(\d+)", status)
            rss += int(m.group(1)) if m else 0
            hwm += int(h.group(1)) if h else 0
        return rss, hwm

    def log_tail(self, n=400):
        text = read_file(self.log) or ""
        return text[-n:].strip()

    def stop(self):
        if self.pid is None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.01)
            if not self.alive():
                break
        for pid in self.tree[1:]:  # workers left behind by a killed parent
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pid = None


# ------------------------------------------------------------------ our clients

class Lines:
    """Line reader over a blocking socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk

    def reply(self):
        """A whole (possibly multi-line) reply; returns its last line."""
        while True:
            line = self.line()
            if len(line) < 4 or line[3:4] != b"-":
                return line


def expect(lines, code):
    line = lines.reply()
    if not line.startswith(code):
        raise RuntimeError("expected %s, got %r" % (code.decode(), line))


def helo_quit(port):
    """One short session; returns its time in ms."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        r = Lines(s)
        expect(r, b"220")
        s.sendall(b"HELO bench.example\r\n")
        expect(r, b"250")
        s.sendall(b"QUIT\r\n")
        expect(r, b"221")
    return (time.perf_counter() - t0) * 1000


BODY_2K = b"".join(b"%04d " % i + b"x" * 73 + b"\r\n" for i in range(26))[:2046] + b"\r\n"


def full_session(port):
    """connect .. 221 with EHLO and a 2 KiB message: (total, ehlo, mail..250) ms."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        r = Lines(s)
        expect(r, b"220")
        t1 = time.perf_counter()
        s.sendall(b"EHLO bench.example\r\n")
        expect(r, b"250")
        t2 = time.perf_counter()
        s.sendall(b"MAIL FROM:<a@bench.example>\r\n")
        expect(r, b"250")
        s.sendall(b"RCPT TO:<b@bench.example>\r\n")
        expect(r, b"250")
        s.sendall(b"DATA\r\n")
        expect(r, b"354")
        s.sendall(BODY_2K + b".\r\n")
        expect(r, b"250")
        t3 = time.perf_counter()
        s.sendall(b"QUIT\r\n")
        expect(r, b"221")
    t4 = time.perf_counter()
    return (t4 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000


def open_idle(port):
    """A connection that saw the greeting and had EHLO answered."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    r = Lines(s)
    expect(r, b"220")
    s.sendall(b"EHLO idle.example\r\n")
    expect(r, b"250")
    return s


# ------------------------------------------------------------------ workloads

def listen_overflows():
    text = read_file("/proc/net/netstat") or ""
    rows = [l.split() for l in text.splitlines() if l.startswith("TcpExt:")]
    if len(rows) >= 2 and "ListenOverflows" in rows[0]:
        return int(rows[1][rows[0].index("ListenOverflows")])
    return 0


class SourceLoad:
    """smtp-source with its DATA counter read as it runs."""

    def __init__(self, opts, port, limit):
        self.argv = ["smtp-source", "-c"] + opts + ["127.0.0.1:%d" % port]
        self.limit = limit
        self.samples = []  # (seconds since start, messages done)

    def run(self):
        t0 = time.perf_counter()
        p = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        reader = threading.Thread(target=self._count, args=(p.stdout, t0))
        reader.start()
        err = []
        errer = threading.Thread(target=lambda: err.append(p.stderr.read()))
        errer.start()
        timed_out = False
        deadline = t0 + self.limit
        rusage = None
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                rusage = ru
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() > deadline:
                timed_out = True
                p.kill()
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        reader.join()
        errer.join()
        done = self.samples[-1][1] if self.samples else 0
        return {"wall_s": wall, "done": done, "timed_out": timed_out,
                "exit": p.returncode, "stderr": (err[0] or b"")[-300:].decode(
                    "replace").strip(),
                "client_cpu_s": rusage.ru_utime + rusage.ru_stime if rusage else None}

    def _count(self, pipe, t0):
        pending = b""
        while True:
            chunk = pipe.read1(4096) if hasattr(pipe, "read1") else pipe.read(64)
            if not chunk:
                break
            now = time.perf_counter() - t0
            parts = (pending + chunk).replace(b"\n", b"\r").split(b"\r")
            pending = parts.pop()
            for part in parts:
                if part.strip().isdigit():
                    self.samples.append((now, int(part)))
        if pending.strip().isdigit():
            self.samples.append((time.perf_counter() - t0, int(pending)))

    def steady_rate(self, done):
        """msg/s between 10% and 90% of the messages delivered."""
        lo = hi = None
        for t, n in self.samples:
            if lo is None and n >= 0.1 * done:
                lo = (t, n)
            if n >= 0.9 * done:
                hi = (t, n)
                break
        if not lo or not hi or hi[0] <= lo[0]:
            return None
        return (hi[1] - lo[1]) / (hi[0] - lo[0])


class Workload:
    name = ""
    what = ""

    def measure(self, server, cfg):
        raise NotImplementedError


class SourceWorkload(Workload):
    def __init__(self, name, what, sessions, keep, msgs, size, limit):
        self.name, self.what = name, what
        self.sessions, self.keep = sessions, keep
        self.msgs, self.size, self.limit = msgs, size, limit

    def opts(self, msgs):
        o = ["-s", str(self.sessions), "-m", str(msgs), "-l", str(self.size)]
        return o[:2] + (["-d"] if self.keep else []) + o[2:]

    def measure(self, server, cfg):
        msgs = max(1, int(self.msgs * cfg.scale))
        ov0 = listen_overflows()
        c0 = server.cpu()
        load = SourceLoad(self.opts(msgs), server.port, self.limit)
        r = load.run()
        c1 = server.cpu()
        ov1 = listen_overflows()
        done = r["done"]
        out = {"messages": msgs, "done": done, "wall_s": r["wall_s"],
               "partial": done < msgs, "timed_out": r["timed_out"],
               "server_alive": server.alive(), "overflows": ov1 - ov0,
               "client_cpu_s": r["client_cpu_s"]}
        if r["stderr"]:
            out["source_stderr"] = r["stderr"]
        if done:
            cpu = (c1[0] - c0[0]) / 1e9
            out.update({
                "msg_s": done / r["wall_s"],
                "steady_msg_s": load.steady_rate(done),
                "mb_s": done * self.size / 1e6 / r["wall_s"],
                "cpu_per_1k": cpu / done * 1000,
                "user_per_1k": (c1[1] - c0[1]) / CLK_TCK / done * 1000,
                "sys_per_1k": (c1[2] - c0[2]) / CLK_TCK / done * 1000,
                "server_cpu_s": cpu,
            })
            if r["client_cpu_s"] is not None:
                out["client_per_1k"] = r["client_cpu_s"] / done * 1000
        return out


class IdleWorkload(Workload):
    def __init__(self, count):
        self.count = count
        self.name = "idle-%d" % count
        self.what = ("%d connections after EHLO, held open; a new client's "
                     "HELO..221 with none and with all held" % count)

    def measure(self, server, cfg):
        probes = 15
        none_held = statistics.median(helo_quit(server.port) for _ in range(probes))
        time.sleep(0.1)
        rss0, _ = server.memory()
        socks = []
        t0 = time.perf_counter()
        failure = None
        try:
            for _ in range(self.count):
                socks.append(open_idle(server.port))
        except (OSError, RuntimeError) as e:
            failure = "after %d connections: %s" % (len(socks), e)
        t_open = time.perf_counter() - t0
        time.sleep(0.3)
        out = {"held": len(socks), "open_s": t_open,
               "server_alive": server.alive()}
        try:
            if failure or not out["server_alive"]:
                raise RuntimeError(failure or "server exited")
            rss1, hwm = server.memory()
            held = [helo_quit(server.port) for _ in range(probes)]
            out.update({
                "rss_per_conn_kib": (rss1 - rss0) / self.count,
                "rss_mib": rss1 / 1024, "hwm_mib": hwm / 1024,
                "probe_none_ms": none_held,
                "probe_held_ms": statistics.median(held),
                "probe_held_max_ms": max(held),
                "all_alive": self._still_open(socks),
            })
        except (OSError, RuntimeError) as e:
            out["failed"] = str(e) + ("; " + server.log_tail(200)
                                      if not server.alive() else "")
        finally:
            for s in socks:
                s.close()
        return out

    @staticmethod
    def _still_open(socks):
        """True if no held connection was closed by the server."""
        for s in socks[:: max(1, len(socks) // 50)]:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    return False
            except BlockingIOError:
                pass
            except OSError:
                return False
        return True


class LatencyWorkload(Workload):
    name = "latency"
    what = "sequential full sessions: connect, EHLO, MAIL, RCPT, DATA 2 KiB, QUIT"

    def __init__(self, sessions, limit):
        self.sessions, self.limit = sessions, limit

    def measure(self, server, cfg):
        for _ in range(5):
            full_session(server.port)  # warm up
        total, ehlo, mail = [], [], []
        deadline = time.perf_counter() + self.limit
        while len(total) < self.sessions and time.perf_counter() < deadline:
            a, b, c = full_session(server.port)
            total.append(a)
            ehlo.append(b)
            mail.append(c)
        total.sort()
        return {"sessions": len(total),
                "session_ms": statistics.median(total),
                "session_p99_ms": total[min(len(total) - 1, int(len(total) * 0.99))],
                "ehlo_ms": statistics.median(ehlo),
                "mail_ms": statistics.median(mail)}


class StartupWorkload(Workload):
    name = "startup"
    what = "spawn until the first 220 greeting; memory after 0.3 s idle"

    def __init__(self, spawns):
        self.spawns = spawns

    def measure(self, server, cfg):
        """`server` is not started: this workload starts it."""
        times = []
        rss = hwm = None
        for i in range(self.spawns):
            s = Server(server.contender, cfg.logdir)
            try:
                s.spawn()
                times.append((s.wait_greeting(30.0) - s.t_spawn) * 1000)
                if i == 0:
                    time.sleep(0.3)
                    s.tree = [s.pid] + children_of(s.pid)
                    rss, hwm = s.memory()
            finally:
                s.stop()
        return {"startup_ms": statistics.median(times),
                "startup_min_ms": min(times),
                "rss_mib": rss / 1024, "hwm_mib": hwm / 1024}


def spawn_floor(n=20):
    """posix_spawn of /bin/true and its exit, in ms (the method's floor)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn("/bin/true", ["true"], os.environ)
        os.waitpid(pid, 0)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def build_workloads(cfg):
    q = cfg.quick
    w = [
        SourceWorkload("conc-keep", "smtp-source -s 20 -d -l 2048 (kept sessions)",
                       20, True, 10000 if q else 40000, 2048, 15 if q else 60),
        SourceWorkload("conc-conn", "smtp-source -s 20 -l 2048 (connection per message)",
                       20, False, 4000 if q else 20000, 2048, 8 if q else 30),
        SourceWorkload("seq", "smtp-source -s 1 -d -l 2048 (one session)",
                       1, True, 3000 if q else 10000, 2048, 15 if q else 60),
        SourceWorkload("big", "smtp-source -s 2 -d -l 1048576 (1 MiB messages)",
                       2, True, 100 if q else 400, 1048576, 20 if q else 90),
    ]
    w += [IdleWorkload(n) for n in cfg.idle_counts]
    w.append(LatencyWorkload(300 if q else 1000, 8 if q else 45))
    w.append(StartupWorkload(9 if q else 21))
    return w


# ------------------------------------------------------------------ figures

# (workload, field, label, unit, better)
FIGURES = [
    ("conc-keep", "msg_s", "conc-keep: throughput",
     "msg/s", "higher"),
    ("conc-keep", "steady_msg_s", "conc-keep: steady rate (10..90%)",
     "msg/s", "higher"),
    ("conc-keep", "cpu_per_1k", "conc-keep: server CPU per 1000 msgs",
     "cpu-s", "lower"),
    ("conc-keep", "user_per_1k", "conc-keep: of which user",
     "cpu-s", "lower"),
    ("conc-keep", "sys_per_1k", "conc-keep: of which kernel",
     "cpu-s", "lower"),
    ("conc-conn", "msg_s", "conc-conn: throughput (conn/msg)",
     "msg/s", "higher"),
    ("conc-conn", "steady_msg_s", "conc-conn: steady rate (10..90%)",
     "msg/s", "higher"),
    ("conc-conn", "cpu_per_1k", "conc-conn: server CPU per 1000 msgs",
     "cpu-s", "lower"),
    ("conc-conn", "overflows", "conc-conn: listen-queue overflows",
     "count", "lower"),
    ("seq", "msg_s", "seq: throughput (1 session)",
     "msg/s", "higher"),
    ("seq", "cpu_per_1k", "seq: server CPU per 1000 msgs",
     "cpu-s", "lower"),
    ("big", "mb_s", "big: payload rate (1 MiB msgs)",
     "MB/s", "higher"),
    ("big", "cpu_per_1k", "big: server CPU per 1000 msgs",
     "cpu-s", "lower"),
    ("big", "user_per_1k", "big: of which user",
     "cpu-s", "lower"),
    ("latency", "session_ms", "latency: full session, median",
     "ms", "lower"),
    ("latency", "session_p99_ms", "latency: full session, p99",
     "ms", "lower"),
    ("latency", "mail_ms", "latency: MAIL..250 after dot, median",
     "ms", "lower"),
    ("latency", "ehlo_ms", "latency: EHLO reply, median",
     "ms", "lower"),
    ("startup", "startup_ms", "startup: spawn -> 220",
     "ms", "lower"),
    ("startup", "rss_mib", "startup: idle VmRSS",
     "MiB", "lower"),
    ("startup", "hwm_mib", "startup: idle VmHWM",
     "MiB", "lower"),
]


def idle_figures(counts):
    out = []
    for n in counts:
        w = "idle-%d" % n
        out += [
            (w, "rss_per_conn_kib", w + ": RSS per idle connection", "KiB", "lower"),
            (w, "rss_mib", w + ": VmRSS with all held", "MiB", "lower"),
            (w, "probe_none_ms", w + ": new client HELO..221, none held", "ms", "lower"),
            (w, "probe_held_ms", w + ": new client HELO..221, all held", "ms", "lower"),
            (w, "open_s", w + ": time to open all", "s", "lower"),
        ]
    return out


def summarize(samples):
    """Median and half the range as a fraction of it; None if no samples."""
    vals = [v for v in samples if isinstance(v, (int, float))]
    if not vals:
        return None
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / 2 / med if med else 0.0
    return {"median": med, "spread": spread, "n": len(vals)}


def cell(fig, name, results):
    """The table text for one contender and figure."""
    work, field = fig[0], fig[1]
    runs = results.get(work, {}).get(name)
    if runs is None:
        return "-"
    if runs and all(r.get("skipped") for r in runs):
        return "skipped"
    if all("failed" in r or "error" in r for r in runs):
        return "FAIL"
    s = summarize([r.get(field) for r in runs])
    if not s:
        return "-"
    mark = "*" if any(r.get("partial") for r in runs) else ""
    return "%s ±%d%%%s" % (fmt(s["median"]), round(s["spread"] * 100), mark)


def median_of(results, work, name, field):
    runs = results.get(work, {}).get(name) or []
    s = summarize([r.get(field) for r in runs if "failed" not in r])
    return s["median"] if s else None


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    if abs(v) >= 1:
        return "%.2f" % v
    return "%.3f" % v


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def figure_table(cfg, results, names):
    figs = FIGURES[:14] + idle_figures(cfg.idle_counts) + FIGURES[14:]
    rows = []
    for fig in figs:
        if fig[0] not in results:
            continue
        rows.append([fig[2], fig[3], fig[4]] + [cell(fig, n, results) for n in names])
    return table(rows, ["figure", "unit", "better"] + names)


def ratio_table(cfg, results, names, base):
    figs = FIGURES[:14] + idle_figures(cfg.idle_counts) + FIGURES[14:]
    rows = []
    for fig in figs:
        b = median_of(results, fig[0], base, fig[1])
        if fig[0] not in results or not b:
            continue
        row = [fig[2], fig[4]]
        for n in names:
            v = median_of(results, fig[0], n, fig[1])
            row.append("-" if v is None else "%.2fx" % (v / b))
        rows.append(row)
    return table(rows, ["figure (contender / %s)" % base, "better"] + names)


# ------------------------------------------------------------------ targets

def target_rows(cfg, results, names):
    """The issue's targets, one row each: the peers' medians, ours, the
    target and whether each of our binaries meets it."""
    peers = ["python-smtpd", "aiosmtpd", "smtp-sink"]
    ours = [n for n in names if n.startswith("smtpd")] or ["smtpd"]
    sink = lambda w, f: median_of(results, w, "smtp-sink", f)
    big_idle = max(cfg.idle_counts) if cfg.idle_counts else None
    idle_w = "idle-%d" % big_idle if big_idle else None
    # (label, workload, field, target text, base value, test(value, base))
    specs = [
        ("server CPU s per 1000 msgs (conc-keep, 20 sessions, 2 KiB)",
         "conc-keep", "cpu_per_1k", "<= 0.9 x smtp-sink",
         sink("conc-keep", "cpu_per_1k"), lambda v, b: v <= 0.9 * b),
        ("msg/s, new connection per message (conc-conn)", "conc-conn", "msg_s",
         ">= smtp-sink", sink("conc-conn", "msg_s"), lambda v, b: v >= b),
        ("MB/s, 1 MiB messages (big)", "big", "mb_s", ">= 1.5 x smtp-sink",
         sink("big", "mb_s"), lambda v, b: v >= 1.5 * b),
        ("RSS per idle connection, KiB (%s)" % idle_w, idle_w, "rss_per_conn_kib",
         "<= 2 KiB", 0, lambda v, b: v <= 2.0),
        ("new client HELO..221 with %s idle held, ms" % big_idle, idle_w,
         "probe_held_ms", "10,000 held, served <= 1 ms", 0,
         lambda v, b: None if big_idle < 10000 else v <= 1.0),
        ("full-session latency median, ms", "latency", "session_ms",
         "<= smtp-sink", sink("latency", "session_ms"), lambda v, b: v <= b),
        ("startup: spawn to first 220, ms", "startup", "startup_ms", "<= 2 ms",
         0, lambda v, b: v <= 2.0),
        ("startup: idle VmRSS, MiB", "startup", "rss_mib", "<= 1 MiB", 0,
         lambda v, b: v <= 1.0),
    ]
    rows = []
    for label, work, field, target, base, test in specs:
        if not work or work not in results:
            continue
        row = [label] + [fmt(median_of(results, work, p, field)) for p in peers]
        met = []
        for n in ours:
            v = median_of(results, work, n, field)
            row.append(fmt(v))
            verdict = None if v is None or base is None else test(v, base)
            met.append("n/a" if verdict is None else "yes" if verdict else "no")
        rows.append(row + [target, "/".join(met)])
    return table(rows, ["figure"] + peers + ours +
                 ["target", "met? (%s)" % "/".join(ours)])


# ------------------------------------------------------------------ driver

def run(cfg):
    avail = known_contenders(cfg.smtpd)
    if cfg.contenders:
        names = cfg.contenders
    else:
        names = [n for n in DEFAULT_ORDER if n in avail]
    for extra in cfg.add:
        name, _, cmd = extra.partition("=")
        avail[name] = Contender(name, cmd.split(), note="--add")
        names.append(name)
    missing = [n for n in names if n not in avail]
    if missing:
        sys.exit("run_bench: not available here: %s (have: %s)" % (
            ", ".join(missing), ", ".join(sorted(avail))))
    if not shutil.which("smtp-source") and not os.access("/usr/sbin/smtp-source", os.X_OK):
        sys.exit("run_bench: smtp-source not found (apt-get install postfix)")
    os.environ["PATH"] += ":/usr/sbin"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(cfg.idle_counts or [0]) + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    workloads = [w for w in build_workloads(cfg) if not cfg.workloads or
                 w.name in cfg.workloads or w.name.split("-")[0] in cfg.workloads]

    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "loadavg_start": (read_file("/proc/loadavg") or "").strip(),
            "argv": sys.argv, "nproc": os.cpu_count(),
            "contenders": {n: avail[n].shown() for n in names},
            "spawn_floor_ms": spawn_floor(), "quick": cfg.quick,
            "pin": PIN,
            "repeat": cfg.repeat}
    say("load average at start: %s" % meta["loadavg_start"])
    for n in names:
        say("  %-18s %s" % (n, avail[n].shown()))
    results = {}
    t_start = time.monotonic()
    for w in workloads:
        results[w.name] = {n: [] for n in names}
        for rep in range(cfg.repeat):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for n in order:
                if cfg.budget and time.monotonic() - t_start > cfg.budget:
                    say("budget of %d s spent; stopping" % cfg.budget)
                    return finish(cfg, meta, results, names)
                r = measure_one(w, avail[n], cfg, results)
                results[w.name][n].append(r)
                say("%-10s %-18s #%d %s" % (w.name, n, rep + 1, brief(r)))
    return finish(cfg, meta, results, names)


def measure_one(w, contender, cfg, results):
    if isinstance(w, IdleWorkload):
        skip = idle_skip(w, contender.name, cfg, results)
        if skip:
            return {"failed": skip, "skipped": True}
    if isinstance(w, StartupWorkload):
        try:
            return w.measure(Server(contender, cfg.logdir), cfg)
        except (OSError, RuntimeError) as e:
            return {"failed": str(e)}
    server = Server(contender, cfg.logdir)
    try:
        server.start()
        return w.measure(server, cfg)
    except (OSError, RuntimeError) as e:
        return {"failed": "%s: %s" % (type(e).__name__, e)}
    finally:
        server.stop()


def idle_skip(w, name, cfg, results):
    """Skips idle counts whose projected RSS (from a smaller count) is over
    --idle-max-mib: smtp-sink keeps 256 KiB per connection."""
    for prev in sorted(cfg.idle_counts):
        if prev >= w.count:
            break
        per = median_of(results, "idle-%d" % prev, name, "rss_per_conn_kib")
        if per and per * w.count / 1024 > cfg.idle_max_mib:
            return "skipped: projected %.0f MiB (%.0f KiB x %d) > --idle-max-mib %d" % (
                per * w.count / 1024, per, w.count, cfg.idle_max_mib)
    return None


def brief(r):
    if "failed" in r:
        return "FAILED: " + r["failed"][:150]
    keys = ["msg_s", "mb_s", "cpu_per_1k", "rss_per_conn_kib", "probe_held_ms",
            "session_ms", "startup_ms", "rss_mib", "overflows"]
    parts = ["%s=%s" % (k, fmt(r[k])) for k in keys if r.get(k) is not None]
    if r.get("partial"):
        parts.append("PARTIAL %d/%d" % (r["done"], r["messages"]))
    return " ".join(parts)


def say(msg):
    print(msg, flush=True)


def finish(cfg, meta, results, names):
    meta["loadavg_end"] = (read_file("/proc/loadavg") or "").strip()
    figs = figure_table(cfg, results, names)
    ratios = ratio_table(cfg, results, names, "smtp-sink") if "smtp-sink" in names else ""
    targets = target_rows(cfg, results, names)
    head = ("run_bench %s; %d repeat(s); load average %s at start, %s at end; "
            "spawn floor %.2f ms" % (meta["started"], cfg.repeat,
                                     meta["loadavg_start"], meta["loadavg_end"],
                                     meta["spawn_floor_ms"]))
    text = "\n\n".join(x for x in [
        head, "Medians (± half the range, * = a run hit its time limit):", figs,
        ratios and "Ratios against smtp-sink:", ratios,
        "Targets (issue: lead every peer):", targets] if x)
    say("\n" + text)
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    if cfg.md:
        with open(cfg.md, "w") as f:
            f.write(text.replace("\n\nMedians", "\n\n## Medians")
                    .replace("\n\nRatios", "\n\n## Ratios")
                    .replace("\n\nTargets", "\n\n## Targets") + "\n")
    missing = any("failed" in r and not r.get("skipped")
                  for w in results.values() for n, runs in w.items()
                  if n.startswith("smtpd") for r in runs)
    return 3 if (cfg.fail_on_smtpd and missing) else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small counts, 1 repeat, idle 1000 only")
    ap.add_argument("--repeat", type=int, help="measurements per contender "
                    "and workload (default 3, 1 with --quick)")
    ap.add_argument("-w", "--workloads", default="",
                    help="comma list: conc-keep,conc-conn,seq,big,idle,latency,startup")
    ap.add_argument("-c", "--contenders", default="",
                    help="comma list (default: every installed one of %s)"
                    % ",".join(DEFAULT_ORDER))
    ap.add_argument("--add", action="append", default=[],
                    help="NAME='COMMAND with {port}', an extra contender")
    ap.add_argument("--smtpd", default=os.path.join(ROOT, "build", "smtpd"),
                    help="the binary to measure (default build/smtpd)")
    ap.add_argument("--idle-counts", default="",
                    help="idle sizes (default 1000,10000; --quick 1000)")
    ap.add_argument("--idle-max-mib", type=int, default=1500,
                    help="skip an idle size projected past this RSS (MiB)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the smtp-source message counts")
    ap.add_argument("--budget", type=int, default=0,
                    help="stop starting measurements after this many seconds")
    ap.add_argument("--json", help="write every sample here")
    ap.add_argument("--md", help="write the tables here as Markdown")
    ap.add_argument("--fail-on-smtpd", action="store_true",
                    help="exit 3 if an smtpd measurement failed")
    ap.add_argument("--pin", choices=["same", "split"],
                    help="same: servers and load (smtp-source, our clients) "
                    "all on one CPU, so no wake-up crosses CPUs; split: "
                    "servers on the second CPU, load on the first. Either "
                    "steadies the figures on a shared VM; not for -j N")
    ap.add_argument("--list", action="store_true", help="list contenders")
    cfg = ap.parse_args(argv)
    if cfg.list:
        for n, c in sorted(known_contenders(cfg.smtpd).items()):
            say("%-18s %s" % (n, c.shown()))
        return 0
    cfg.repeat = cfg.repeat or (1 if cfg.quick else 3)
    cfg.workloads = [w for w in cfg.workloads.split(",") if w]
    cfg.contenders = [c for c in cfg.contenders.split(",") if c]
    counts = cfg.idle_counts or ("1000" if cfg.quick else "1000,10000")
    cfg.idle_counts = sorted(int(n) for n in counts.split(",") if n)
    if cfg.pin:
        global PIN
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            sys.exit("run_bench: --pin needs two CPUs")
        PIN = (cpus[1] if cfg.pin == "split" else cpus[0], cpus[0])
        os.sched_setaffinity(0, {PIN[1]})
    cfg.logdir = tempfile.mkdtemp(prefix="smtpd-bench-")
    say("server logs in %s" % cfg.logdir)
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
