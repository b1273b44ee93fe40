#!/usr/bin/env python3
"""Long fault tests of the smtpd binary, over 127.0.0.1 only.

Each test starts its own `smtpd -c DebuggingServer` on a free port, bounds
every wait, stops the server by its PID, prints one PASS/FAIL/SKIP line with
what it measured, and the run ends with "N passed, M failed".

  conns      N connections (default 10,000) opened at once and held while
             a new client sends a message
  messages   M messages (default 100,000) over several connections at once;
             the server must print exactly the messages it accepted
  fdexhaust  the server under `ulimit -n 64`: more clients than descriptors,
             one log line, little CPU while paused, all served once released
  sigterm    SIGTERM during DATA: that message is finished and printed, an
             idle session gets 421, exit status 0; a second signal ends it
  noread     a client pipelines NOOPs and never reads: the server's memory
             stays bounded
  noread-timeout  the same client is dropped once --timeout runs out
  privdrop   as root without -n: /proc/PID/status shows only nobody's ids
  session    a short mixed session (for `--wrap valgrind ...`); exit 0
  all        every test above but session

Usage: stress.py --bin build/smtpd [--wrap CMD] [--conns N] [--messages M]
                 [--clients K] TEST...
"""
import argparse
import os
import pwd
import re
import resource
import select
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

END = b'------------ END MESSAGE ------------'


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# ----------------------------------------------------------------- server

def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """True once something listens on 127.0.0.1:port (/proc/net/tcp; no
    probe connection, which would count as a client)."""
    want = ':%04X' % port
    try:
        with open('/proc/net/tcp') as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(want) and parts[3] == '0A':
                    return True
    except OSError:
        pass
    return False


class Server:
    """smtpd on 127.0.0.1:<free port>; stdout and stderr go to files."""

    def __init__(self, opts, extra=(), nosetuid=True, nofile=None,
                 timeout=10):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='smtpd-stress-')
        self.out_path = os.path.join(self.dir, 'stdout')
        self.err_path = os.path.join(self.dir, 'stderr')
        argv = shlex.split(opts.wrap) if opts.wrap else []
        argv += [opts.bin] + (['-n'] if nosetuid else [])
        argv += ['-c', 'DebuggingServer'] + list(extra)
        argv += ['127.0.0.1:%d' % self.port]

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.out = open(self.out_path, 'wb')
        self.err = open(self.err_path, 'wb')
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.err,
                                     preexec_fn=limit)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise Failure('server exited with %s: %s' % (
                    self.proc.returncode, self.stderr()[-500:]))
            if time.monotonic() > deadline:
                self.kill()
                raise Failure('server not listening after %d s' % timeout)
            time.sleep(0.02)

    def stdout(self):
        with open(self.out_path, 'rb') as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def printed(self):
        return self.stdout().count(END)

    def wait_printed(self, n, timeout):
        """Waits until n messages are printed or none came for `timeout`."""
        last, seen_at = -1, time.monotonic()
        while True:
            got = self.printed()
            if got >= n:
                return got
            if got != last:
                last, seen_at = got, time.monotonic()
            elif time.monotonic() - seen_at > timeout:
                return got
            time.sleep(0.05)

    def status(self, field):
        with open('/proc/%d/status' % self.pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return line.split(':', 1)[1].strip()
        return ''

    def rss_kb(self):
        return int(self.status('VmRSS').split()[0])

    def cpu_seconds(self):
        with open('/proc/%d/stat' % self.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL; returns the exit status (None if killed)."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
        return code

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self):
        self.kill()
        self.out.close()
        self.err.close()
        for p in (self.out_path, self.err_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        os.rmdir(self.dir)


# ----------------------------------------------------------------- client

class Client:
    """A blocking SMTP client with a deadline on every read."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout)
        self.sock.settimeout(timeout)
        self.buf = b''

    def reply(self):
        """One whole reply (last line of a multi-line one); '' at EOF."""
        while True:
            while b'\r\n' in self.buf:
                line, self.buf = self.buf.split(b'\r\n', 1)
                if len(line) < 4 or line[3:4] != b'-':
                    return line.decode('utf-8', 'replace')
            data = self.sock.recv(65536)
            if not data:
                return ''
            self.buf += data

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b'\r\n')
        return self.reply()

    def expect(self, line, code):
        got = self.cmd(line)
        check(got.startswith(code), '%r answered %r, not %s' % (line, got, code))
        return got

    def eof(self):
        try:
            return self.sock.recv(1) == b''
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def transaction(c, body=b'Subject: stress\r\n\r\nhello\r\n', ehlo=True):
    """MAIL, RCPT, DATA and a body; returns the reply to the final dot."""
    if ehlo:
        c.expect('EHLO stress.example', '250')
    c.expect('MAIL FROM:<a@example.org>', '250')
    c.expect('RCPT TO:<b@example.org>', '250')
    c.expect('DATA', '354')
    c.send(body + b'.\r\n')
    return c.reply()


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (need, max(hard, need) if hard != -1 else hard))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ----------------------------------------------------------------- tests

def test_conns(opts):
    n = opts.conns
    have = raise_nofile(n + 256)
    check(have >= n + 256, 'RLIMIT_NOFILE is %d; %d connections need %d '
          '(run as root or raise the hard limit)' % (have, n, n + 256))
    srv = Server(opts)
    socks = []
    sel = selectors.DefaultSelector()
    try:
        t0 = time.monotonic()
        greeted = 0
        pending = {}
        deadline = t0 + 120

        def service(timeout):
            nonlocal greeted
            for key, _ in sel.select(timeout):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    raise Failure('connection failed: %s' % e)
                if not data:
                    raise Failure('server closed a held connection')
                pending[s] += data
                if b'\r\n' in pending[s]:
                    check(pending[s].startswith(b'220 '),
                          'greeting was %r' % pending[s][:80])
                    greeted += 1
                    sel.unregister(s)

        # All connects are started at once; greetings are read as they come.
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(('127.0.0.1', srv.port))
            check(err in (0, 115), 'connect: %s' % os.strerror(err))
            socks.append(s)
            pending[s] = b''
            sel.register(s, selectors.EVENT_READ)
            if i % 500 == 499:
                service(0)
        opened = time.monotonic() - t0
        while greeted < n and time.monotonic() < deadline:
            service(1.0)
        held = time.monotonic() - t0
        check(greeted == n, 'only %d of %d connections greeted' % (greeted, n))
        rss = srv.rss_kb()

        # A newcomer is served while every one of them is held open.
        t1 = time.monotonic()
        c = Client(srv.port)
        check(c.reply().startswith('220 '), 'newcomer not greeted')
        check(transaction(c).startswith('250'), 'newcomer message refused')
        c.expect('QUIT', '221')
        c.close()
        newcomer_ms = (time.monotonic() - t1) * 1000
        check(srv.wait_printed(1, 5) == 1, 'newcomer message not printed')
        check(srv.proc.poll() is None, 'server died')

        # Every held connection is still open: none is readable (no data,
        # no end of file).
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        dropped = len(sel.select(0.5))
        check(dropped == 0, '%d held connections were closed' % dropped)

        for s in socks:
            s.close()
        socks = []
        code = srv.stop()
        check(code == 0, 'exit status %s after SIGTERM' % code)
        return ('%d connections opened in %.1f s, all greeted after %.1f s, '
                'server RSS %.1f MiB (%.0f bytes/connection); newcomer '
                'transaction %.0f ms while they were held; all still open'
                % (n, opened, held, rss / 1024.0, rss * 1024.0 / n,
                   newcomer_ms))
    finally:
        for s in socks:
            s.close()
        sel.close()
        srv.close()


def message_worker(port, first, count, per_conn, result, index):
    """Sends messages first..first+count-1; result[index] = accepted ids."""
    accepted = []
    try:
        i = first
        end = first + count
        while i < end:
            c = Client(port, timeout=30)
            check(c.reply().startswith('220'), 'no greeting')
            c.expect('EHLO stress.example', '250')
            for _ in range(min(per_conn, end - i)):
                c.send(b'MAIL FROM:<s@example.org>\r\n'
                       b'RCPT TO:<r@example.org>\r\nDATA\r\n')
                for code in ('250', '250', '354'):
                    r = c.reply()
                    check(r.startswith(code), 'got %r, not %s' % (r, code))
                c.send(b'Message-Id: <%d@stress>\r\n\r\nmessage %d\r\n.\r\n'
                       % (i, i))
                r = c.reply()
                check(r.startswith('250'), 'message %d: %r' % (i, r))
                accepted.append(i)
                i += 1
            c.expect('QUIT', '221')
            c.close()
    except Exception as e:  # reported by the caller
        result[index] = (accepted, '%s: %s' % (type(e).__name__, e))
        return
    result[index] = (accepted, None)


def test_messages(opts):
    total, k = opts.messages, opts.clients
    srv = Server(opts)
    try:
        t0 = time.monotonic()
        # Processes, not threads: one Python client per core-ish would be
        # the bottleneck otherwise. Each child reports through a pipe.
        per = [total // k + (1 if i < total % k else 0) for i in range(k)]
        firsts = [sum(per[:i]) for i in range(k)]
        kids = []
        for i in range(k):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                result = {}
                message_worker(srv.port, firsts[i], per[i], 1000, result, 0)
                accepted, err = result[0]
                os.write(w, ('%d %s\n' % (len(accepted), err or '')).encode())
                os._exit(0)
            os.close(w)
            kids.append((pid, r))
        accepted, errors = 0, []
        for pid, r in kids:
            with os.fdopen(r) as f:
                line = f.read().strip()
            os.waitpid(pid, 0)
            count, _, err = line.partition(' ')
            accepted += int(count or 0)
            if err:
                errors.append(err)
        elapsed = time.monotonic() - t0
        printed = srv.wait_printed(accepted, 10)
        out = srv.stdout()
        ids = re.findall(rb"b'Message-Id: <(\d+)@stress>'", out)
        unique = len(set(ids))
        code = srv.stop(30)
        check(not errors, 'client errors: %s' % '; '.join(errors[:3]))
        check(accepted == total, 'accepted %d of %d' % (accepted, total))
        check(printed == accepted, 'printed %d, accepted %d' % (printed, accepted))
        check(len(ids) == total and unique == total,
              '%d Message-Id lines, %d distinct, %d sent' % (len(ids), unique, total))
        check(code == 0, 'exit status %s after SIGTERM' % code)
        return ('%d messages sent over %d concurrent connections (a new one '
                'every 1000 messages) in %.1f s (%.0f msg/s); %d accepted, '
                '%d printed, %d distinct Message-Ids'
                % (total, k, elapsed, total / elapsed, accepted, printed, unique))
    finally:
        srv.close()


def test_fdexhaust(opts):
    limit, clients = 64, 100
    srv = Server(opts, nofile=limit)
    conns = []
    try:
        sel = selectors.DefaultSelector()
        greeted = set()

        def collect(timeout):
            for key, _ in sel.select(timeout):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b''
                sel.unregister(s)
                check(data.startswith(b'220 '), 'greeting was %r' % data[:80])
                greeted.add(s)

        for _ in range(clients):
            s = socket.create_connection(('127.0.0.1', srv.port), 5)
            s.setblocking(False)
            conns.append(s)
            sel.register(s, selectors.EVENT_READ)
        # Until no greeting came for a second (at most 10 s).
        deadline = time.monotonic() + 10
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            collect(0.1)
            if len(greeted) != last:
                last, quiet_since = len(greeted), time.monotonic()
            elif time.monotonic() - quiet_since > 1.0:
                break
        first = len(greeted)
        check(0 < first < clients,
              '%d of %d greeted under a limit of %d' % (first, clients, limit))

        # Held past two retry periods: one log line, and no busy loop.
        cpu0, t0 = srv.cpu_seconds(), time.monotonic()
        collect(3.0)
        cpu = srv.cpu_seconds() - cpu0
        wall = time.monotonic() - t0
        check(len(greeted) == first, 'more greeted while out of descriptors')
        lines = [l for l in srv.stderr().splitlines() if 'accept' in l]
        check(len(lines) == 1, 'stderr accept lines: %r' % lines)
        check(cpu < 0.5 * wall, 'server used %.2f s CPU in %.2f s while '
              'paused' % (cpu, wall))

        # Release: the waiting clients are greeted, a newcomer is served.
        t1 = time.monotonic()
        for s in list(greeted):
            conns.remove(s)
            s.close()
        want = clients - first
        greeted.clear()
        deadline = time.monotonic() + 10
        while len(greeted) < want and time.monotonic() < deadline:
            collect(0.2)
        check(len(greeted) == want, '%d of %d waiting clients greeted after '
              'release' % (len(greeted), want))
        recovered = time.monotonic() - t1
        for s in conns:
            s.close()
        conns = []
        c = Client(srv.port)
        check(c.reply().startswith('220'), 'newcomer not greeted')
        check(transaction(c).startswith('250'), 'newcomer message refused')
        c.expect('QUIT', '221')
        c.close()
        check(srv.wait_printed(1, 5) == 1, 'message not printed')
        lines = [l for l in srv.stderr().splitlines() if l.strip()]
        check(len(lines) == 1, 'stderr after recovery: %r' % lines)
        code = srv.stop()
        check(code == 0, 'exit status %s' % code)
        sel.close()
        return ('ulimit -n %d, %d clients: %d greeted, %d waited; %.2f s CPU '
                'in %.1f s while paused; %d stderr line (%r); all %d waiting '
                'clients greeted %.1f s after release, then a message served'
                % (limit, clients, first, clients - first, cpu, wall,
                   len(lines), lines[0][:60], want, recovered))
    finally:
        for s in conns:
            s.close()
        srv.close()


def test_sigterm(opts):
    srv = Server(opts)
    try:
        busy = Client(srv.port)
        check(busy.reply().startswith('220'), 'no greeting')
        busy.expect('EHLO busy.example', '250')
        busy.expect('MAIL FROM:<a@example.org>', '250')
        busy.expect('RCPT TO:<b@example.org>', '250')
        busy.expect('DATA', '354')
        busy.send(b'Subject: in flight\r\n\r\nfirst half\r\n')
        idle = Client(srv.port)
        check(idle.reply().startswith('220'), 'no greeting')
        idle.expect('EHLO idle.example', '250')

        srv.signal(signal.SIGTERM)
        r = idle.reply()
        check(r.startswith('421'), 'idle session got %r, not 421' % r)
        check(idle.eof(), 'idle session not closed')
        refused = False
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.1', srv.port), 1).close()
                time.sleep(0.05)
            except ConnectionRefusedError:
                refused = True
        check(refused, 'still accepting after SIGTERM')
        check(srv.proc.poll() is None, 'exited with a message in flight')

        busy.send(b'second half\r\n.\r\n')
        r = busy.reply()
        check(r.startswith('250'), 'in-flight message got %r' % r)
        r = busy.reply()
        check(r.startswith('421'), 'after the message: %r, not 421' % r)
        check(busy.eof(), 'busy session not closed')
        code = srv.wait(10)
        check(code == 0, 'exit status %s' % code)
        out = srv.stdout()
        check(out.count(END) == 1 and b"b'first half'" in out
              and b"b'second half'" in out, 'printed: %r' % out[-300:])
        busy.close()
        idle.close()
    finally:
        srv.close()

    # A second signal ends it at once, transaction or not.
    srv = Server(opts)
    try:
        c = Client(srv.port)
        check(c.reply().startswith('220'), 'no greeting')
        c.expect('HELO x', '250')
        c.expect('MAIL FROM:<a@b>', '250')
        c.expect('RCPT TO:<c@d>', '250')
        c.expect('DATA', '354')
        srv.signal(signal.SIGTERM)
        time.sleep(0.2)
        check(srv.proc.poll() is None, 'exited on the first signal')
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        code = srv.wait(5)
        check(code is not None, 'still running 5 s after a second signal')
        second = time.monotonic() - t0
        check(srv.printed() == 0, 'an unfinished message was printed')
        c.close()
    finally:
        srv.close()
    return ('SIGTERM in DATA: idle session 421 + close, listener closed, '
            'in-flight message finished (250) and printed, then 421, exit 0; '
            'a second signal exited in %.0f ms (status %s)'
            % (second * 1000, code))


def test_noread(opts):
    srv = Server(opts)
    try:
        c = Client(srv.port)
        check(c.reply().startswith('220'), 'no greeting')
        rss0 = srv.rss_kb()
        c.sock.setblocking(False)
        chunk = b'NOOP\r\n' * 10000
        sent, blocked_since = 0, None
        deadline = time.monotonic() + 30
        pos = 0
        while time.monotonic() < deadline:
            try:
                n = c.sock.send(chunk[pos % 6:])
                sent += n
                pos += n
                blocked_since = None
            except BlockingIOError:
                if blocked_since is None:
                    blocked_since = time.monotonic()
                elif time.monotonic() - blocked_since > 1.0:
                    break
                time.sleep(0.01)
        check(blocked_since is not None, 'the server read %d bytes and kept '
              'reading for 30 s' % sent)
        rss1 = srv.rss_kb()
        grew = (rss1 - rss0) / 1024.0
        check(grew < 16, 'server RSS grew %.1f MiB' % grew)
        # Reading now drains every reply (while the command cut by the last
        # write is finished); the session still works.
        rest = chunk[pos % 6:6] if pos % 6 else b''
        want = (sent + len(rest)) // 6
        got = 0
        deadline = time.monotonic() + 60
        while got < want:
            check(time.monotonic() < deadline,
                  'only %d of %d replies after 60 s' % (got, want))
            if rest:
                try:
                    rest = rest[c.sock.send(rest):]
                except BlockingIOError:
                    pass
            try:
                data = c.sock.recv(1 << 20)
            except BlockingIOError:
                select.select([c.sock], [c.sock] if rest else [], [], 0.1)
                continue
            check(data, 'closed after %d of %d replies' % (got, want))
            c.buf += data
            end = c.buf.rfind(b'\r\n') + 2  # 1: no line end yet
            if end < 2:
                continue
            lines = c.buf[:end].count(b'\r\n')
            check(c.buf[:end] == b'250 OK\r\n' * lines,
                  'a reply after #%d was not 250 OK' % got)
            got += lines
            c.buf = c.buf[end:]
        c.sock.setblocking(True)
        c.sock.settimeout(30)
        c.expect('QUIT', '221')
        c.close()
        check(srv.stop() == 0, 'bad exit status')
        return ('client wrote %.1f MiB of NOOPs (%d commands) without reading '
                'until its writes blocked; server RSS %.1f -> %.1f MiB; all '
                '%d replies then read' % (sent / 1048576.0, want, rss0 / 1024.0,
                                          rss1 / 1024.0, want))
    finally:
        srv.close()


def test_noread_timeout(opts):
    """A client that never reads must still lose its session at --timeout."""
    srv = Server(opts, extra=['--timeout', '1'])
    try:
        c = Client(srv.port)
        check(c.reply().startswith('220'), 'no greeting')
        fds = len(os.listdir('/proc/%d/fd' % srv.pid))
        c.sock.setblocking(False)
        chunk = b'NOOP\r\n' * 10000
        pos, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 10:
            try:
                pos += c.sock.send(chunk[pos % 6:])
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                break  # the server closed
            if len(os.listdir('/proc/%d/fd' % srv.pid)) < fds:
                break
        dropped = len(os.listdir('/proc/%d/fd' % srv.pid)) < fds
        held = time.monotonic() - t0
        c.close()
        check(dropped, 'a client that never reads held its session %.0f s '
              'past --timeout 1 (%d bytes written)' % (held, pos))
        check(srv.stop() == 0, 'bad exit status')
        return ('--timeout 1: a pipelining client that never reads was '
                'dropped after %.1f s' % held)
    finally:
        srv.close()


def test_privdrop(opts):
    if os.geteuid() != 0:
        raise Skip('not root')
    nobody = pwd.getpwnam('nobody')
    srv = Server(opts, nosetuid=False)
    try:
        c = Client(srv.port)
        check(c.reply().startswith('220'), 'no greeting')
        uid = srv.status('Uid').split()
        gid = srv.status('Gid').split()
        groups = srv.status('Groups').split()
        capeff = srv.status('CapEff')
        capprm = srv.status('CapPrm')
        check(uid == [str(nobody.pw_uid)] * 4, 'Uid: %s' % uid)
        check(gid == [str(nobody.pw_gid)] * 4, 'Gid: %s' % gid)
        check(groups == [str(nobody.pw_gid)], 'Groups: %s' % groups)
        check(int(capeff, 16) == 0 and int(capprm, 16) == 0,
              'CapEff %s CapPrm %s' % (capeff, capprm))
        check(transaction(c).startswith('250'), 'message refused')
        c.expect('QUIT', '221')
        c.close()
        check(srv.wait_printed(1, 5) == 1, 'message not printed')
        code = srv.stop()
        check(code == 0, 'exit status %s' % code)
        return ('Uid %s, Gid %s, Groups %s, CapEff %s; a message was served '
                'after the drop' % (' '.join(uid), ' '.join(gid),
                                    ' '.join(groups), capeff))
    finally:
        srv.close()


def test_session(opts):
    """Mixed traffic for a run under valgrind: nothing long, every path."""
    srv = Server(opts, extra=['-s', '2048', '-u'], timeout=60)
    try:
        for i in range(3):
            c = Client(srv.port, timeout=30)
            check(c.reply().startswith('220'), 'no greeting')
            check(transaction(c).startswith('250'), 'message %d refused' % i)
            c.expect('RSET', '250')
            c.expect('MAIL FROM:<\u00e9@example.org> SMTPUTF8', '250')
            c.expect('RCPT TO:<b@example.org>', '250')
            c.expect('DATA', '354')
            c.send(b'x' * 3000 + b'\r\n.\r\n')
            check(c.reply().startswith('552'), 'oversized message accepted')
            c.expect('A' * 600, '500')
            c.expect('VRFY <a@b>', '252')
            c.expect('BOGUS', '500')
            c.expect('QUIT', '221')
            check(c.eof(), 'not closed after QUIT')
            c.close()
        # Dropped in the middle of DATA, reset, and half-closed clients.
        for how in ('close', 'reset', 'half'):
            c = Client(srv.port, timeout=30)
            check(c.reply().startswith('220'), 'no greeting')
            c.expect('HELO x', '250')
            c.expect('MAIL FROM:<a@b>', '250')
            c.expect('RCPT TO:<c@d>', '250')
            c.expect('DATA', '354')
            c.send(b'partial\r\n')
            if how == 'reset':
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  b'\x01\x00\x00\x00\x00\x00\x00\x00')
            if how == 'half':
                c.sock.shutdown(socket.SHUT_WR)
                check(c.eof(), 'half-closed session not closed')
            c.close()
        c = Client(srv.port, timeout=30)
        check(c.reply().startswith('220'), 'no greeting')
        check(transaction(c).startswith('250'), 'last message refused')
        c.close()
        check(srv.wait_printed(4, 10) == 4, 'printed %d of 4' % srv.printed())
        code = srv.stop(60)
        check(code == 0, 'exit status %s; stderr: %s' % (code, srv.stderr()[-2000:]))
        return '4 messages, 3 refused, 3 dropped sessions; exit status 0'
    finally:
        srv.close()


TESTS = {
    'conns': test_conns, 'messages': test_messages,
    'fdexhaust': test_fdexhaust, 'sigterm': test_sigterm,
    'noread': test_noread, 'noread-timeout': test_noread_timeout,
    'privdrop': test_privdrop,
    'session': test_session,
}
ALL = ['conns', 'messages', 'fdexhaust', 'sigterm', 'noread',
       'noread-timeout', 'privdrop']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bin', default='build/smtpd')
    ap.add_argument('--wrap', default='', help='command put before the binary')
    ap.add_argument('--conns', type=int, default=10000)
    ap.add_argument('--messages', type=int, default=100000)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('tests', nargs='+', choices=sorted(TESTS) + ['all'])
    opts = ap.parse_args()
    opts.bin = os.path.abspath(opts.bin)
    names = []
    for t in opts.tests:
        names += ALL if t == 'all' else [t]
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    passed = failed = skipped = 0
    for name in names:
        t0 = time.monotonic()
        try:
            figures = TESTS[name](opts)
            passed += 1
            print('PASS %s (%.1f s): %s' % (name, time.monotonic() - t0, figures),
                  flush=True)
        except Skip as e:
            skipped += 1
            print('SKIP %s: %s' % (name, e), flush=True)
        except Exception as e:
            failed += 1
            print('FAIL %s (%.1f s): %s: %s' % (name, time.monotonic() - t0,
                                                type(e).__name__, e), flush=True)
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    print(line)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
