// Test-only helpers shared by the SMTP, CLI, wire and end-to-end tests:
// deadlines, free ports, spawning the smtpd binary (fork/execve) and
// talking to it as a blocking SMTP client. Every wait here is bounded.
#ifndef SMTPD_TESTS_TEST_UTIL_H
#define SMTPD_TESTS_TEST_UTIL_H

#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

extern char** environ;

namespace testutil {

using Clock = std::chrono::steady_clock;

/// A point in the future; remaining() counts down to 0.
class Deadline {
 public:
  explicit Deadline(int ms) : end_(Clock::now() + std::chrono::milliseconds(ms)) {}
  int remaining() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end_ - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
  }
  bool expired() const { return Clock::now() >= end_; }

 private:
  Clock::time_point end_;
};

inline sockaddr_in loopback(int port) {
  sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel chose it).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sin = loopback(0);
  socklen_t len = sizeof sin;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) == 0)
    port = ntohs(sin.sin_port);
  ::close(fd);
  return port;
}

/// A listening socket on 127.0.0.1:0 (for "port in use"); *port gets the port.
inline int listen_any(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin = loopback(0);
  socklen_t len = sizeof sin;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(sin.sin_port);
  return fd;
}

/// Opens a TCP connection to 127.0.0.1:port, or -1 (errno set).
inline int connect_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sin = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/// The binary under test: $SMTPD_BIN, else build/smtpd.
inline std::string smtpd_bin() {
  const char* b = getenv("SMTPD_BIN");
  return b && *b ? b : "build/smtpd";
}

inline bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// Reads what is available on `fd` into *out, waiting at most `ms` for the
/// first byte. Returns bytes read, 0 at end of file, -1 on timeout/error.
inline ssize_t read_some(int fd, std::string* out, int ms) {
  pollfd p{fd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return -1;
  char buf[65536];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n > 0) out->append(buf, static_cast<size_t>(n));
  return n < 0 ? -1 : n;
}

/// A child process with its stdout and stderr on pipes. Killed (SIGKILL)
/// and reaped on destruction if still running.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& o) noexcept { *this = std::move(o); }
  Child& operator=(Child&& o) noexcept {
    std::swap(pid, o.pid);
    std::swap(out_fd, o.out_fd);
    std::swap(err_fd, o.err_fd);
    std::swap(out, o.out);
    std::swap(err, o.err);
    std::swap(status, o.status);
    return *this;
  }
  ~Child() {
    kill_now();
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
  }

  bool running() const { return pid > 0; }

  /// Reads stdout until it contains `marker` (from offset `from`) or the
  /// deadline passes. stderr is drained meanwhile so the child never blocks.
  bool read_out_until(const std::string& marker, int ms, size_t from = 0) {
    Deadline d(ms);
    while (out.find(marker, from) == std::string::npos) {
      if (d.expired() || out_fd < 0) return false;
      pump(std::min(d.remaining(), 50));
    }
    return true;
  }

  /// One round of reading from both pipes, up to `ms`.
  void pump(int ms) {
    pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    if (::poll(p, 2, ms) <= 0) return;
    if (p[0].revents && drain_fd(out_fd, &out) == 0) close_fd(&out_fd);
    if (p[1].revents && drain_fd(err_fd, &err) == 0) close_fd(&err_fd);
  }

  /// Waits up to `ms` for the child to exit, reading its pipes meanwhile.
  /// Returns true when it exited; `status` holds the wait status.
  bool wait_exit(int ms) {
    Deadline d(ms);
    while (pid > 0) {
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        pid = -1;
        break;
      }
      if (d.expired()) return false;
      if (out_fd >= 0 || err_fd >= 0) pump(10);
      else ::usleep(5000);
    }
    // Collect what is left in the pipes (the writer is gone).
    for (int i = 0; i < 100 && (out_fd >= 0 || err_fd >= 0); ++i) pump(20);
    return true;
  }

  bool exited_with(int code) const {
    return pid < 0 && WIFEXITED(status) && WEXITSTATUS(status) == code;
  }

  void signal(int sig) {
    if (pid > 0) ::kill(pid, sig);
  }

  void kill_now() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    pid = -1;
  }

  pid_t pid = -1;
  int out_fd = -1;
  int err_fd = -1;
  std::string out;
  std::string err;
  int status = 0;

 private:
  static ssize_t drain_fd(int fd, std::string* into) {
    char buf[65536];
    ssize_t n;
    do {
      n = ::read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n > 0) into->append(buf, static_cast<size_t>(n));
    return n;
  }
  static void close_fd(int* fd) {
    ::close(*fd);
    *fd = -1;
  }
};

/// Starts `argv` (argv[0] is the path) with stdout/stderr on pipes and
/// stdin on /dev/null. Child.pid is -1 if fork failed.
inline Child spawn(const std::vector<std::string>& argv) {
  Child c;
  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) return c;
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    ::close(outp[0]);
    ::close(outp[1]);
    return c;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(outp[1], 1);
    ::dup2(errp[1], 2);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(args[0], args.data(), environ);
    _exit(127);
  }
  ::close(outp[1]);
  ::close(errp[1]);
  if (pid < 0) {
    ::close(outp[0]);
    ::close(errp[0]);
    return c;
  }
  c.pid = pid;
  c.out_fd = outp[0];
  c.err_fd = errp[0];
  return c;
}

/// Runs `argv` to completion (at most `ms`); the Child holds the result.
inline Child run(const std::vector<std::string>& argv, int ms = 5000) {
  Child c = spawn(argv);
  if (c.running() && !c.wait_exit(ms)) c.kill_now();
  return c;
}

/// Waits until 127.0.0.1:port accepts a connection (the probe connection
/// is closed at once) or the child exits or `ms` pass.
inline bool wait_listening(Child& c, int port, int ms = 5000) {
  Deadline d(ms);
  while (!d.expired()) {
    int fd = connect_loopback(port);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    if (::waitpid(c.pid, &c.status, WNOHANG) == c.pid) {
      c.pid = -1;
      return false;
    }
    c.pump(10);
  }
  return false;
}

/// Starts the smtpd binary with `args` followed by 127.0.0.1:PORT on a
/// free port and waits until it listens. Retries with another port if the
/// chosen one was taken meanwhile. *port gets the port.
inline Child start_server(const std::vector<std::string>& args, int* port) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    int p = free_port();
    std::vector<std::string> argv = {smtpd_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("127.0.0.1:" + std::to_string(p));
    Child c = spawn(argv);
    if (!c.running()) return c;
    if (wait_listening(c, p)) {
      *port = p;
      return c;
    }
    c.wait_exit(1000);
    if (c.err.find("in use") == std::string::npos) return c;
  }
  return Child();
}

/// True when `buf` starts with one complete SMTP reply; *len is its size.
/// A reply is lines "DDD-..." ending with a line "DDD ..." or "DDD".
inline bool complete_reply(const std::string& buf, size_t* len) {
  size_t pos = 0;
  for (;;) {
    size_t eol = buf.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    bool more = eol - pos >= 4 && buf[pos + 3] == '-';
    pos = eol + 2;
    if (!more) {
      *len = pos;
      return true;
    }
  }
}

/// A blocking SMTP client over TCP for tests. Replies are returned raw,
/// CRLFs included; an empty string means timeout or close.
class Client {
 public:
  Client() = default;
  explicit Client(int fd) : fd_(fd) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { close(); }

  bool connect(int port) {
    close();
    fd_ = connect_loopback(port);
    if (fd_ < 0) return false;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
  }
  int fd() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
    eof_ = false;
  }

  /// Writes all of `data` (one write call unless the socket is full).
  bool send(const std::string& data, int ms = 5000) {
    Deadline d(ms);
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
      if (d.expired()) return false;
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, std::min(d.remaining(), 50));
    }
    return true;
  }

  /// The next complete reply, waiting up to `ms`.
  std::string reply(int ms = 5000) {
    Deadline d(ms);
    size_t len;
    while (!complete_reply(buf_, &len)) {
      if (eof_ || d.expired()) return std::string();
      fill(d.remaining());
    }
    std::string r = buf_.substr(0, len);
    buf_.erase(0, len);
    return r;
  }

  /// Sends `line` + CRLF and returns the reply.
  std::string cmd(const std::string& line, int ms = 5000) {
    if (!send(line + "\r\n", ms)) return std::string();
    return reply(ms);
  }

  /// True once the server closed the connection (reading up to `ms`);
  /// *extra receives anything it sent before closing.
  bool wait_closed(int ms = 5000, std::string* extra = nullptr) {
    Deadline d(ms);
    while (!eof_ && !d.expired()) fill(d.remaining());
    if (extra) *extra = buf_;
    return eof_;
  }

  /// Bytes received and not yet returned as a reply.
  const std::string& pending() const { return buf_; }
  /// Reads for up to `ms` and returns true if nothing at all arrived.
  bool quiet(int ms) {
    size_t before = buf_.size();
    Deadline d(ms);
    while (!eof_ && !d.expired()) fill(d.remaining());
    return !eof_ && buf_.size() == before;
  }

 private:
  void fill(int ms) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, std::min(ms, 100));
    if (r <= 0) return;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
    else if (n == 0 || (errno != EAGAIN && errno != EINTR)) eof_ = true;
  }

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

/// Splits "a\r\nb\r\n" into lines without their CRLF.
inline std::vector<std::string> reply_lines(const std::string& reply) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < reply.size()) {
    size_t eol = reply.find("\r\n", pos);
    if (eol == std::string::npos) eol = reply.size();
    out.push_back(reply.substr(pos, eol - pos));
    pos = eol + 2;
  }
  return out;
}

// A fixture for tests of the built binary: start() runs a DebuggingServer
// on a free port (with extra arguments); the server stops with the test.
class BinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!file_exists(smtpd_bin())) GTEST_SKIP() << "no binary at " << smtpd_bin();
  }

  void start(std::vector<std::string> args = {}) {
    std::vector<std::string> all = {"-n", "-c", "DebuggingServer"};
    all.insert(all.end(), args.begin(), args.end());
    server = start_server(all, &port);
    ASSERT_TRUE(server.running()) << "server did not start: " << server.err;
  }

  Child server;
  int port = 0;
};

}  // namespace testutil

#endif
