// Test helpers for the relay tests (proxy_test.cc, mailman_test.cc):
// UpstreamRecorder, a scriptable SMTP server on a loopback port running in
// its own threads with blocking sockets, which records every session byte
// for byte; and SmtpTestClient, a non-blocking client that runs the
// reactor while it waits for each reply.
#ifndef SMTPD_TESTS_UPSTREAM_RECORDER_H
#define SMTPD_TESTS_UPSTREAM_RECORDER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "smtpd/asyncore.h"

namespace relaytest {

using Clock = std::chrono::steady_clock;

inline long ms_since(Clock::time_point t0) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               Clock::now() - t0)
                               .count());
}

/// A loopback socket address for `family` and `port`.
inline socklen_t loopback(int family, int port, sockaddr_storage* ss) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET6) {
    sockaddr_in6* a = reinterpret_cast<sockaddr_in6*>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    return sizeof *a;
  }
  sockaddr_in* a = reinterpret_cast<sockaddr_in*>(ss);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a->sin_port = htons(static_cast<uint16_t>(port));
  return sizeof *a;
}

/// What one upstream connection received.
struct UpstreamSession {
  std::vector<std::string> commands;  // each command line, CRLF removed
  std::vector<std::string> bodies;    // each DATA body, raw, up to ".\r\n"
  bool ended = false;                 // the connection is over
};

/// A fake upstream. Rules say what to do at a stage ("greeting", "ehlo",
/// "helo", "mail", "rcpt", "data", "message", "quit"), optionally only
/// for one argument (the path as sent, "<bob@example>"): reply with a
/// given text (several lines joined by CRLF allowed; 421 then closes),
/// stall (never answer), or reset the connection. Otherwise it accepts.
class UpstreamRecorder {
 public:
  enum class Action { reply, stall, reset };

  /// Listens on the loopback of `family`; with listen_ = false it only
  /// binds, so connections are refused.
  explicit UpstreamRecorder(int family = AF_INET, bool listen_ = true) {
    fd_ = ::socket(family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    socklen_t len = loopback(family, 0, &ss);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
      return;
    len = sizeof ss;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(family == AF_INET6
                      ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (!listen_) return;
    if (::listen(fd_, 16) != 0) {
      port_ = -1;
      return;
    }
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~UpstreamRecorder() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    for (std::thread& t : threads_) t.join();
    if (fd_ >= 0) ::close(fd_);
  }

  int port() const { return port_; }

  void on(const std::string& stage, const std::string& reply,
          const std::string& arg = "*") {
    add({stage, arg, Action::reply, reply});
  }
  void stall(const std::string& stage, const std::string& arg = "*") {
    add({stage, arg, Action::stall, ""});
  }
  void reset(const std::string& stage, const std::string& arg = "*") {
    add({stage, arg, Action::reset, ""});
  }
  /// EHLO then lists "SIZE 10000000".
  void offer_size() {
    std::lock_guard<std::mutex> g(mu_);
    size_ = true;
  }

  std::vector<UpstreamSession> sessions() {
    std::lock_guard<std::mutex> g(mu_);
    return sessions_;
  }
  size_t connections() {
    std::lock_guard<std::mutex> g(mu_);
    return sessions_.size();
  }

  /// Sessions whose connection is over.
  size_t ended() {
    std::lock_guard<std::mutex> g(mu_);
    size_t n = 0;
    for (const UpstreamSession& s : sessions_) n += s.ended;
    return n;
  }

 private:
  struct Rule {
    std::string stage;
    std::string arg;
    Action action;
    std::string reply;
  };

  void add(Rule r) {
    std::lock_guard<std::mutex> g(mu_);
    rules_.push_back(std::move(r));
  }

  bool find(const std::string& stage, const std::string& arg, Rule* out) {
    std::lock_guard<std::mutex> g(mu_);
    for (const Rule& r : rules_)
      if (r.stage == stage && (r.arg == "*" || r.arg == arg)) {
        *out = r;
        return true;
      }
    return false;
  }

  void accept_loop() {
    while (!stop_ && threads_.size() < 32) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      size_t idx;
      {
        std::lock_guard<std::mutex> g(mu_);
        idx = sessions_.size();
        sessions_.emplace_back();
      }
      threads_.emplace_back([this, c, idx] { serve(c, idx); });
    }
  }

  void record(size_t idx, const std::function<void(UpstreamSession&)>& f) {
    std::lock_guard<std::mutex> g(mu_);
    f(sessions_[idx]);
  }

  // Says nothing until the test ends or the relay hangs up.
  void stall_until_closed(int c) {
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char tmp[4096];
      if (::recv(c, tmp, sizeof tmp, 0) <= 0) return;
    }
  }

  // Reads until `buf` holds `delim`; false at EOF, error or stop.
  bool read_until(int c, std::string* buf, const std::string& delim,
                  size_t from = 0) {
    for (int i = 0; i < 100000 && !stop_; ++i) {
      if (buf->find(delim, from) != std::string::npos) return true;
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf->append(tmp, static_cast<size_t>(n));
    }
    return false;
  }

  void send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  static std::string path_arg(const std::string& line) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) return "";
    std::string a = line.substr(colon + 1);
    return a.substr(0, a.find(' '));
  }

  // Applies the rule for `stage`, or sends `normal`. False: session over.
  bool answer(int c, const std::string& stage, const std::string& arg,
              const std::string& normal, std::string* code) {
    Rule r;
    bool ruled = find(stage, arg, &r);
    if (ruled && r.action == Action::stall) {
      stall_until_closed(c);
      return false;
    }
    if (ruled && r.action == Action::reset) {
      linger l{1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      return false;
    }
    std::string text = ruled ? r.reply : normal;
    send_all(c, text + "\r\n");
    *code = text.substr(text.rfind('\n') == std::string::npos
                            ? 0 : text.rfind('\n') + 1, 3);
    return *code != "421";
  }

  void serve(int c, size_t idx) {
    std::string buf, code;
    bool ok = answer(c, "greeting", "*", "220 upstream.test ESMTP", &code);
    while (ok && !stop_) {
      if (!read_until(c, &buf, "\r\n")) break;
      size_t eol = buf.find("\r\n");
      std::string line = buf.substr(0, eol);
      buf.erase(0, eol + 2);
      record(idx, [&](UpstreamSession& s) { s.commands.push_back(line); });
      std::string verb = line.substr(0, 4);
      for (char& ch : verb) ch = static_cast<char>(toupper(ch));
      if (verb == "EHLO") {
        bool size;
        {
          std::lock_guard<std::mutex> g(mu_);
          size = size_;
        }
        ok = answer(c, "ehlo", "*",
                    size ? "250-upstream.test\r\n250-SIZE 10000000\r\n250 8BITMIME"
                         : "250-upstream.test\r\n250 8BITMIME",
                    &code);
      } else if (verb == "HELO") {
        ok = answer(c, "helo", "*", "250 upstream.test", &code);
      } else if (verb == "MAIL") {
        ok = answer(c, "mail", path_arg(line), "250 2.1.0 Ok", &code);
      } else if (verb == "RCPT") {
        ok = answer(c, "rcpt", path_arg(line), "250 2.1.5 Ok", &code);
      } else if (verb == "DATA") {
        ok = answer(c, "data", "*", "354 go ahead", &code);
        if (!ok || code != "354") continue;
        // The body ends at CRLF "." CRLF, or is just "." CRLF.
        std::string body = "\r\n" + buf;
        buf.clear();
        if (!read_until(c, &body, "\r\n.\r\n")) {
          record(idx, [&](UpstreamSession& s) { s.bodies.push_back(body.substr(2)); });
          break;
        }
        size_t end = body.find("\r\n.\r\n") + 5;
        buf = body.substr(end);
        std::string msg = body.substr(2, end - 2);
        record(idx, [&](UpstreamSession& s) { s.bodies.push_back(msg); });
        ok = answer(c, "message", "*", "250 2.0.0 queued", &code);
      } else if (verb == "QUIT") {
        answer(c, "quit", "*", "221 bye", &code);
        break;
      } else if (verb == "RSET" || verb == "NOOP") {
        ok = answer(c, "rset", "*", "250 Ok", &code);
      } else {
        ok = answer(c, "other", "*", "502 unknown", &code);
      }
    }
    ::close(c);
    record(idx, [](UpstreamSession& s) { s.ended = true; });
  }

  int fd_ = -1;
  int port_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> threads_;  // only the acceptor touches it
  std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<UpstreamSession> sessions_;
  bool size_ = false;
};

/// A non-blocking SMTP client whose waits run the server's reactor.
class SmtpTestClient {
 public:
  SmtpTestClient(smtpd::asyncore::socket_map& map, int port,
                 int family = AF_INET)
      : map_(map) {
    fd_ = ::socket(family, SOCK_STREAM, 0);
    sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return;
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    greeting = reply();
  }
  ~SmtpTestClient() { close(); }

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// Sends all of `s`, running the reactor while the socket is full.
  bool send(const std::string& s) {
    size_t off = 0;
    Clock::time_point t0 = Clock::now();
    while (off < s.size() && ms_since(t0) < 10000) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && errno == EAGAIN) {
        map_.poll_once(10);
      } else {
        return false;
      }
    }
    return off == s.size();
  }

  /// Runs the reactor until one whole reply arrived; returns its last line
  /// (all lines are in `last`), "CLOSED" at end of file, "TIMEOUT".
  std::string reply(int max_ms = 10000) {
    last.clear();
    Clock::time_point t0 = Clock::now();
    for (int i = 0; i < 1000000 && ms_since(t0) < max_ms; ++i) {
      size_t eol;
      while ((eol = in_.find("\r\n")) != std::string::npos) {
        std::string line = in_.substr(0, eol);
        in_.erase(0, eol + 2);
        last.push_back(line);
        if (line.size() < 4 || line[3] != '-') return line;
      }
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return "CLOSED";
      map_.poll_once(10);
    }
    return "TIMEOUT";
  }

  std::string cmd(const std::string& line, int max_ms = 10000) {
    if (!send(line + "\r\n")) return "SEND FAILED";
    return reply(max_ms);
  }

  std::string greeting;
  std::vector<std::string> last;

 private:
  smtpd::asyncore::socket_map& map_;
  int fd_ = -1;
  std::string in_;
};

/// Runs the reactor until `done()` or `max_ms` passed.
inline bool pump_until(smtpd::asyncore::socket_map& map,
                       const std::function<bool()>& done, int max_ms = 5000) {
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 1000000 && !done() && ms_since(t0) < max_ms; ++i)
    map.poll_once(10);
  return done();
}

}  // namespace relaytest

#endif
