// Test helper: a socketpair(2) whose `mine` end goes to the dispatcher or
// async_chat under test (which then owns it) while the test keeps `peer`,
// closed with this object.
#ifndef SMTPD_TESTS_SOCKET_PAIR_H
#define SMTPD_TESTS_SOCKET_PAIR_H

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include "smtpd/asyncore.h"

namespace testpair {

using Clock = std::chrono::steady_clock;

inline long ms_since(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)
          .count());
}

// Runs passes of up to 10 ms until `done()` or `max_ms` passed.
inline bool pump(smtpd::asyncore::socket_map& map,
                 const std::function<bool()>& done, int max_ms = 3000) {
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 100000 && !done() && ms_since(t0) < max_ms; ++i)
    map.poll_once(10);
  return done();
}

// Runs exactly `n` passes of up to `ms` each.
inline void passes(smtpd::asyncore::socket_map& map, int n, int ms = 10) {
  for (int i = 0; i < n; ++i) map.poll_once(ms);
}

struct SocketPair {
  int mine = -1;
  int peer = -1;
  explicit SocketPair(bool nonblocking_peer) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
      mine = sv[0];
      peer = sv[1];
      if (nonblocking_peer)
        ::fcntl(peer, F_SETFL, ::fcntl(peer, F_GETFL) | O_NONBLOCK);
    }
  }
  ~SocketPair() { close_peer(); }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  bool ok() const { return mine >= 0 && peer >= 0; }
  void close_peer() {
    if (peer >= 0) ::close(peer);
    peer = -1;
  }
  // Writes all of a small `s` (the socket buffer takes it at once).
  bool put(const std::string& s) {
    return ::send(peer, s.data(), s.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(s.size());
  }
  // Appends what the other end sent so far to *got; false at end of file.
  bool drain(std::string* got) {
    char buf[65536];
    for (int i = 0; i < 10000; ++i) {
      ssize_t n = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got->append(buf, static_cast<size_t>(n));
        continue;
      }
      return n != 0;  // EAGAIN: open, nothing more now
    }
    return true;
  }
  // True when the other end was closed: the peer reads end of file (or
  // ECONNRESET, when it closed with input left unread).
  bool peer_sees_eof() {
    char buf[256];
    for (int i = 0; i < 1000; ++i) {
      ssize_t n = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;  // EAGAIN: still open
    }
    return false;
  }
};

}  // namespace testpair

#endif
