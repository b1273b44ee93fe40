// Unit tests of the reactor in include/smtpd/asyncore.h, over socketpair(2).
// Each test has its own socket_map, whose backend follows $SMTPD_POLLER.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtpd/asyncore.h"
#include "socket_pair.h"

namespace {

using smtpd::asyncore::dispatcher;
using smtpd::asyncore::socket_map;
using Clock = testpair::Clock;

using testpair::ms_since;

// The peer end is blocking.
struct Pair : testpair::SocketPair {
  Pair() : SocketPair(false) {}
};

using testpair::passes;
using testpair::pump;

// Reads everything that arrives; closes on end of file.
class Reader : public dispatcher {
 public:
  Reader(int fd, socket_map* map) : dispatcher(fd, map) {}
  bool writable() override { return false; }
  void handle_read() override {
    ++reads;
    char buf[4096];
    ssize_t n = recv(buf, sizeof buf);
    if (n > 0) data.append(buf, static_cast<size_t>(n));
  }
  void handle_close() override {
    ++closes;
    close();
  }
  std::string data;
  int reads = 0;
  int closes = 0;
};

TEST(Asyncore, HandleReadCalledWhenDataArrives) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  ASSERT_TRUE(p.put("hello"));
  EXPECT_TRUE(pump(map, [&] { return r.data.size() >= 5; }));
  EXPECT_EQ("hello", r.data);
  EXPECT_GE(r.reads, 1);
}

TEST(Asyncore, HandleReadNotCalledWithoutData) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  passes(map, 5);
  EXPECT_EQ(0, r.reads);
  EXPECT_EQ(1u, map.size());
}

TEST(Asyncore, DispatcherIsInTheMapUnderItsDescriptor) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  EXPECT_EQ(p.mine, r.fileno());
  EXPECT_EQ(&r, map.find(p.mine));
  EXPECT_EQ(1u, map.size());
  EXPECT_EQ(&map, &r.map());
}

TEST(Asyncore, WrappedDescriptorIsMadeNonBlocking) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  int flags = ::fcntl(p.mine, F_GETFL);
  ASSERT_GE(flags, 0);
  EXPECT_TRUE(flags & O_NONBLOCK);
  char c;
  EXPECT_EQ(-1, r.recv(&c, 1)) << "recv with nothing there must not block";
}

TEST(Asyncore, SendReachesThePeer) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  EXPECT_EQ(3, r.send("abc", 3));
  char buf[8];
  EXPECT_EQ(3, ::recv(p.peer, buf, sizeof buf, MSG_DONTWAIT));
  EXPECT_EQ(0, memcmp(buf, "abc", 3));
}

TEST(Asyncore, HandleCloseCalledOnceOnPeerClose) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  ASSERT_TRUE(p.put("last words"));
  p.close_peer();
  EXPECT_TRUE(pump(map, [&] { return r.closes > 0; }));
  passes(map, 3);
  EXPECT_EQ(1, r.closes);
  EXPECT_EQ("last words", r.data) << "data before the close is not lost";
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(nullptr, map.find(p.mine));
}

// Throws from handle_read; counts handle_error.
class Thrower : public Reader {
 public:
  using Reader::Reader;
  void handle_read() override {
    ++reads;
    throw std::runtime_error("boom (expected by the test)");
  }
  void handle_error(const std::exception& e) override {
    ++errors;
    what = e.what();
    dispatcher::handle_error(e);
  }
  int errors = 0;
  std::string what;
};

TEST(Asyncore, ThrowingHandlerClosesOnlyThatDispatcher) {
  socket_map map;
  Pair pt;
  Pair pr;
  ASSERT_TRUE(pt.ok() && pr.ok());
  Thrower t(pt.mine, &map);
  Reader r(pr.mine, &map);
  ASSERT_TRUE(pt.put("x"));
  ASSERT_TRUE(pr.put("y"));
  EXPECT_NO_THROW(pump(map, [&] { return t.errors > 0 && !r.data.empty(); }));
  EXPECT_EQ(1, t.errors);
  EXPECT_EQ("boom (expected by the test)", t.what);
  EXPECT_EQ(nullptr, map.find(pt.mine));
  EXPECT_TRUE(pt.peer_sees_eof()) << "the thrower's socket is closed";

  // The other dispatcher is untouched and still served.
  EXPECT_EQ("y", r.data);
  EXPECT_EQ(&r, map.find(pr.mine));
  ASSERT_TRUE(pr.put("z"));
  EXPECT_NO_THROW(pump(map, [&] { return r.data == "yz"; }));
  EXPECT_EQ("yz", r.data);
  EXPECT_EQ(0, r.closes);
}

// Closes itself (twice) in whichever handler runs first; counts every
// handler call and any that come after the close.
class SelfCloser : public dispatcher {
 public:
  SelfCloser(int fd, socket_map* map) : dispatcher(fd, map) {}
  void handle_read() override { hit(); }
  void handle_write() override { hit(); }
  void handle_close() override { hit(); }
  void hit() {
    ++calls;
    if (closed) ++after_close;
    closed = true;
    close();
    close();
  }
  int calls = 0;
  int after_close = 0;
  bool closed = false;
};

TEST(Asyncore, CloseInsideHandlerIsSafe) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  SelfCloser d(p.mine, &map);
  ASSERT_TRUE(p.put("x"));  // readable and writable in the same pass
  EXPECT_TRUE(pump(map, [&] { return d.closed; }));
  passes(map, 3);
  EXPECT_EQ(1, d.calls);
  EXPECT_EQ(0, d.after_close) << "a handler ran after close()";
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(p.peer_sees_eof());
}

// Counts its destruction; on its first event closes `victim` (if any).
class Counted : public dispatcher {
 public:
  Counted(int fd, socket_map* map, int* destroyed)
      : dispatcher(fd, map), destroyed_(destroyed) {}
  ~Counted() override { ++*destroyed_; }
  bool writable() override { return false; }
  void handle_read() override {
    ++*events;
    char buf[64];
    ssize_t n = recv(buf, sizeof buf);
    if (n > 0 && victim) {
      victim->close();
      victim = nullptr;
    }
  }
  void handle_close() override {
    ++*events;
    close();
  }
  Counted* victim = nullptr;
  int own_events = 0;
  int* events = &own_events;

 private:
  int* destroyed_;
};

TEST(Asyncore, AdoptedDispatcherDeletedAfterClose) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  int destroyed = 0;
  int events = 0;
  Counted* c = map.adopt(std::make_unique<Counted>(p.mine, &map, &destroyed));
  c->events = &events;
  passes(map, 2);
  EXPECT_EQ(0, destroyed) << "deleted while open";
  p.close_peer();
  EXPECT_TRUE(pump(map, [&] { return destroyed > 0; }));
  EXPECT_EQ(1, destroyed);
  EXPECT_TRUE(map.empty());
  passes(map, 2);
  EXPECT_EQ(1, destroyed) << "deleted twice";
}

// Records, from inside handle_close, how many deletions had happened.
class CloseRecorder : public dispatcher {
 public:
  CloseRecorder(int fd, socket_map* map, int* destroyed, int* seen)
      : dispatcher(fd, map), destroyed_(destroyed), seen_(seen) {}
  ~CloseRecorder() override { ++*destroyed_; }
  bool writable() override { return false; }
  void handle_read() override {
    char buf[64];
    recv(buf, sizeof buf);
  }
  void handle_close() override {
    close();
    *seen_ = *destroyed_;  // `this` must still be alive here
  }

 private:
  int* destroyed_;
  int* seen_;
};

TEST(Asyncore, AdoptedDispatcherNotDeletedInsideItsOwnHandler) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  int destroyed = 0;
  int seen = -1;
  map.adopt(std::make_unique<CloseRecorder>(p.mine, &map, &destroyed, &seen));
  p.close_peer();
  EXPECT_TRUE(pump(map, [&] { return destroyed > 0; }));
  EXPECT_EQ(0, seen) << "deleted before handle_close returned";
  EXPECT_EQ(1, destroyed);
}

TEST(Asyncore, ClosingAnotherReadyDispatcherInsideAHandlerIsSafe) {
  // Before the map: its destructor frees the survivor, which counts.
  int destroyed = 0;
  int events = 0;
  socket_map map;
  Pair p1;
  Pair p2;
  ASSERT_TRUE(p1.ok() && p2.ok());
  Counted* a = map.adopt(std::make_unique<Counted>(p1.mine, &map, &destroyed));
  Counted* b = map.adopt(std::make_unique<Counted>(p2.mine, &map, &destroyed));
  a->events = &events;
  b->events = &events;
  // Each closes the other: whichever the loop serves first wins, and the
  // other, though ready in the same pass, must not be served (nor touched
  // after its deletion).
  a->victim = b;
  b->victim = a;
  ASSERT_TRUE(p1.put("x"));
  ASSERT_TRUE(p2.put("x"));
  EXPECT_TRUE(pump(map, [&] { return destroyed > 0; }));
  passes(map, 2);
  EXPECT_EQ(1, events) << "the closed dispatcher was still served";
  EXPECT_EQ(1, destroyed);
  EXPECT_EQ(1u, map.size());
  EXPECT_TRUE(p1.peer_sees_eof() != p2.peer_sees_eof());
}

// Counts handle_timeout without closing.
class Sleeper : public dispatcher {
 public:
  Sleeper(int fd, socket_map* map) : dispatcher(fd, map) {}
  bool writable() override { return false; }
  void handle_read() override {
    char buf[64];
    recv(buf, sizeof buf);
  }
  void handle_timeout() override {
    ++timeouts;
    if (fired_ms < 0) fired_ms = ms_since(start);
  }
  Clock::time_point start = Clock::now();
  int timeouts = 0;
  long fired_ms = -1;
};

TEST(Asyncore, SetTimeoutFiresHandleTimeoutOnce) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Sleeper s(p.mine, &map);
  s.start = Clock::now();
  s.set_timeout(0.05);
  EXPECT_GE(s.deadline(), 0);
  pump(map, [] { return false; }, 300);
  EXPECT_EQ(1, s.timeouts);
  EXPECT_GE(s.fired_ms, 45) << "fired early";
  EXPECT_LT(s.fired_ms, 250) << "fired late";
  EXPECT_EQ(&s, map.find(p.mine)) << "an overridden handle_timeout does not close";
}

TEST(Asyncore, NegativeSetTimeoutDisarms) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Sleeper s(p.mine, &map);
  s.set_timeout(0.03);
  s.set_timeout(-1);
  pump(map, [] { return false; }, 150);
  EXPECT_EQ(0, s.timeouts);
}

TEST(Asyncore, SetTimeoutAgainReplacesTheDeadline) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Sleeper s(p.mine, &map);
  s.start = Clock::now();
  s.set_timeout(0.03);
  s.set_timeout(0.15);
  pump(map, [&] { return s.timeouts > 0; }, 1000);
  EXPECT_EQ(1, s.timeouts);
  EXPECT_GE(s.fired_ms, 140) << "the first deadline fired";
}

// Gets its socket after construction, as a listener or client would.
class Timed : public dispatcher {
 public:
  explicit Timed(socket_map* map) : dispatcher(map) {}
  bool writable() override { return false; }
  void handle_timeout() override { ++timeouts; }
  int timeouts = 0;
};

TEST(Asyncore, SetTimeoutBeforeTheSocketIsSetStillFires) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Timed t(&map);
  t.set_timeout(0.03);
  t.set_socket(p.mine);
  pump(map, [&] { return t.timeouts > 0; }, 1000);
  EXPECT_EQ(1, t.timeouts) << "deadline() says " << t.deadline();
}

TEST(Asyncore, DefaultHandleTimeoutCloses) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);  // does not override handle_timeout
  r.set_timeout(0.02);
  EXPECT_TRUE(pump(map, [&] { return map.empty(); }, 1000));
  EXPECT_TRUE(p.peer_sees_eof());
}

// Writes only while `want` is set; handle_write may clear it.
class Toggle : public dispatcher {
 public:
  Toggle(int fd, socket_map* map) : dispatcher(fd, map) {}
  bool writable() override { return want; }
  void handle_read() override {
    char buf[64];
    recv(buf, sizeof buf);
  }
  void handle_write() override {
    ++writes;
    if (once) {
      want = false;
      mark_dirty();
    }
  }
  bool want = false;
  bool once = false;
  int writes = 0;
};

TEST(Asyncore, MarkDirtyEnablesWriteInterest) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Toggle t(p.mine, &map);
  passes(map, 3);
  EXPECT_EQ(0, t.writes);
  t.want = true;
  t.mark_dirty();
  EXPECT_TRUE(pump(map, [&] { return t.writes > 0; }, 1000));
}

TEST(Asyncore, MarkDirtyInsideHandleWriteDisablesWriteInterest) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Toggle t(p.mine, &map);
  t.want = true;
  t.once = true;
  t.mark_dirty();
  EXPECT_TRUE(pump(map, [&] { return t.writes > 0; }, 1000));
  passes(map, 5);
  EXPECT_EQ(1, t.writes);
}

// Always writable; counts handle_write and can stop the loop.
class Spinner : public dispatcher {
 public:
  Spinner(int fd, socket_map* map) : dispatcher(fd, map) {}
  bool readable() override { return false; }
  void handle_write() override {
    ++writes;
    if (stop_at == writes) map().stop();
    if (exit_at == writes) throw smtpd::asyncore::ExitNow();
  }
  int writes = 0;
  int stop_at = -1;
  int exit_at = -1;
};

TEST(Asyncore, LoopWithCountRunsThatManyPasses) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Spinner s(p.mine, &map);
  Clock::time_point t0 = Clock::now();
  smtpd::asyncore::loop(1.0, 5, &map);
  EXPECT_LT(ms_since(t0), 1000);
  EXPECT_EQ(5, s.writes);
}

TEST(Asyncore, LoopReturnsWhenTheMapIsEmpty) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Reader r(p.mine, &map);
  ASSERT_TRUE(p.put("bye"));
  p.close_peer();
  Clock::time_point t0 = Clock::now();
  // 200 passes of up to 20 ms would take 4 s if emptiness were ignored.
  smtpd::asyncore::loop(0.02, 200, &map);
  EXPECT_TRUE(map.empty());
  EXPECT_LT(ms_since(t0), 2000);
  EXPECT_EQ("bye", r.data);
}

TEST(Asyncore, StopEndsLoopAfterThePass) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Spinner s(p.mine, &map);
  s.stop_at = 2;
  smtpd::asyncore::loop(0.01, 100, &map);
  EXPECT_EQ(2, s.writes);
  EXPECT_TRUE(map.stopping());
  map.clear_stop();
  EXPECT_FALSE(map.stopping());
}

TEST(Asyncore, ExitNowLeavesLoopWithoutClosing) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Spinner s(p.mine, &map);
  s.exit_at = 3;
  try {
    smtpd::asyncore::loop(0.01, 100, &map);
  } catch (const smtpd::asyncore::ExitNow&) {
    // asyncore lets ExitNow out of loop(); returning is fine too.
  }
  EXPECT_EQ(3, s.writes);
  EXPECT_EQ(&s, map.find(p.mine)) << "ExitNow is not an error";
}

TEST(Asyncore, PollOnceReturnsFalseOnceTheMapIsEmpty) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  {
    Reader r(p.mine, &map);
    EXPECT_TRUE(map.poll_once(0));
  }
  EXPECT_TRUE(map.empty()) << "a destroyed dispatcher leaves the map";
  EXPECT_FALSE(map.poll_once(0));
}

TEST(Asyncore, CloseAllClosesEveryDispatcher) {
  socket_map map;
  Pair p1;
  Pair p2;
  ASSERT_TRUE(p1.ok() && p2.ok());
  int destroyed = 0;
  Reader r(p1.mine, &map);
  map.adopt(std::make_unique<Counted>(p2.mine, &map, &destroyed));
  map.close_all();
  map.poll_once(0);
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(p1.peer_sees_eof());
  EXPECT_TRUE(p2.peer_sees_eof());
  EXPECT_EQ(1, destroyed);
}

TEST(Asyncore, UnknownPollerNameThrows) {
  EXPECT_THROW(socket_map("nope"), std::runtime_error);
}

}  // namespace
