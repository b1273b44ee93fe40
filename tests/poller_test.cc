// Unit tests of the readiness backends in src/poller, run on every backend
// this build has (available_pollers()), whatever $SMTPD_POLLER says.
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "poller/poller.h"

namespace {

using smtpd::poller::kRead;
using smtpd::poller::kWrite;
using smtpd::poller::PollEvent;
using smtpd::poller::Poller;
using Clock = std::chrono::steady_clock;

// A socketpair whose ends close with the object (either end may be closed
// early by hand).
struct Pair {
  int a = -1;
  int b = -1;
  Pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
      a = sv[0];
      b = sv[1];
    }
  }
  ~Pair() {
    close_a();
    close_b();
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  bool ok() const { return a >= 0 && b >= 0; }
  void close_a() {
    if (a >= 0) ::close(a);
    a = -1;
  }
  void close_b() {
    if (b >= 0) ::close(b);
    b = -1;
  }
};

bool put(int fd, const char* s) {
  size_t n = strlen(s);
  return ::send(fd, s, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
}

long ms_since(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)
          .count());
}

// Raises the soft descriptor limit to at least `want`; false if it cannot.
bool raise_nofile(rlim_t want, rlimit* saved) {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  *saved = rl;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want) return true;
  if (rl.rlim_cur == RLIM_INFINITY) return true;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) return false;
  rl.rlim_cur = want;
  return ::setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

class PollerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string err;
    poller_ = smtpd::poller::make_poller(GetParam(), &err);
    ASSERT_NE(poller_, nullptr) << err;
    ASSERT_EQ(GetParam(), poller_->name());
  }
  std::unique_ptr<Poller> poller_;
};

TEST_P(PollerTest, ReadableAfterPeerWrites) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  int n = poller_->wait(1000, evs);
  ASSERT_EQ(1, n);
  ASSERT_EQ(1u, evs.size());
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].readable);
  EXPECT_FALSE(evs[0].writable);
  EXPECT_FALSE(evs[0].error);
}

TEST_P(PollerTest, NotReadableBeforePeerWrites) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  std::vector<PollEvent> evs;
  EXPECT_EQ(0, poller_->wait(20, evs));
  EXPECT_TRUE(evs.empty());
}

TEST_P(PollerTest, WriteInterestReportsWritable) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kWrite));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_EQ(1u, evs.size());
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_FALSE(evs[0].readable);
  EXPECT_FALSE(evs[0].error);
}

TEST_P(PollerTest, ReadAndWriteReadyMergeIntoOneEvent) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead | kWrite));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_EQ(1u, evs.size());
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].readable);
  EXPECT_TRUE(evs[0].writable);
}

TEST_P(PollerTest, NoInterestReportsNothing) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, 0));
  ASSERT_TRUE(put(p.b, "x"));  // readable and writable, but not asked for
  std::vector<PollEvent> evs;
  EXPECT_EQ(0, poller_->wait(30, evs));
  EXPECT_TRUE(evs.empty());
}

TEST_P(PollerTest, ChangingInterestFromReadToWrite) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_TRUE(evs[0].readable);

  // The byte is still unread: only write readiness may be reported now.
  ASSERT_EQ(0, poller_->set(p.a, kWrite));
  evs.clear();
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_EQ(1u, evs.size());
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_FALSE(evs[0].readable);
}

TEST_P(PollerTest, ChangingInterestFromWriteToRead) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kWrite));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_TRUE(evs[0].writable);

  ASSERT_EQ(0, poller_->set(p.a, kRead));
  evs.clear();
  EXPECT_EQ(0, poller_->wait(20, evs)) << "nothing to read yet";
  ASSERT_TRUE(put(p.b, "x"));
  evs.clear();
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_TRUE(evs[0].readable);
  EXPECT_FALSE(evs[0].writable);
}

TEST_P(PollerTest, SettingTheSameMaskTwiceIsHarmless) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(1u, evs.size());
  EXPECT_TRUE(evs[0].readable);
}

TEST_P(PollerTest, RemoveStopsReports) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead | kWrite));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  poller_->remove(p.a);
  evs.clear();
  EXPECT_EQ(0, poller_->wait(30, evs));
  EXPECT_TRUE(evs.empty());
}

TEST_P(PollerTest, RemoveOfUnknownDescriptorIsHarmless) {
  Pair p;
  ASSERT_TRUE(p.ok());
  poller_->remove(p.a);
  poller_->remove(100000);
  poller_->remove(-1);
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  EXPECT_EQ(1, poller_->wait(1000, evs));
}

TEST_P(PollerTest, RemoveThenSetRegistersAgain) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  poller_->remove(p.a);
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].readable);
}

TEST_P(PollerTest, RemovingTheHighestDescriptorKeepsTheOthers) {
  Pair low;
  Pair high;
  ASSERT_TRUE(low.ok() && high.ok());
  ASSERT_LT(low.a, high.a);
  ASSERT_EQ(0, poller_->set(low.a, kRead));
  ASSERT_EQ(0, poller_->set(high.a, kRead));
  ASSERT_TRUE(put(low.b, "x"));
  ASSERT_TRUE(put(high.b, "x"));
  poller_->remove(high.a);
  high.close_a();
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(low.a, evs[0].fd);
}

TEST_P(PollerTest, RemovingALowerDescriptorKeepsTheHighest) {
  Pair low;
  Pair high;
  ASSERT_TRUE(low.ok() && high.ok());
  ASSERT_LT(low.a, high.a);
  ASSERT_EQ(0, poller_->set(low.a, kRead));
  ASSERT_EQ(0, poller_->set(high.a, kRead));
  ASSERT_TRUE(put(low.b, "x"));
  ASSERT_TRUE(put(high.b, "x"));
  poller_->remove(low.a);
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(high.a, evs[0].fd);
}

TEST_P(PollerTest, TimeoutReturnsZeroWithNothing) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  std::vector<PollEvent> evs;
  Clock::time_point t0 = Clock::now();
  EXPECT_EQ(0, poller_->wait(50, evs));
  long ms = ms_since(t0);
  EXPECT_TRUE(evs.empty());
  EXPECT_GE(ms, 40) << "returned before the timeout";
  EXPECT_LT(ms, 1000) << "timeout far overshot";
}

TEST_P(PollerTest, ZeroTimeoutDoesNotBlock) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  std::vector<PollEvent> evs;
  Clock::time_point t0 = Clock::now();
  EXPECT_EQ(0, poller_->wait(0, evs));
  EXPECT_LT(ms_since(t0), 200);
  EXPECT_TRUE(evs.empty());
}

TEST_P(PollerTest, WaitAppendsAndReturnsTheNumberAppended) {
  Pair p;
  Pair q;
  ASSERT_TRUE(p.ok() && q.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  ASSERT_EQ(0, poller_->set(q.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  ASSERT_TRUE(put(q.b, "x"));
  std::vector<PollEvent> evs;
  evs.push_back({-7, false, false, false});
  ASSERT_EQ(2, poller_->wait(1000, evs));
  ASSERT_EQ(3u, evs.size());
  EXPECT_EQ(-7, evs[0].fd);
  std::set<int> fds{evs[1].fd, evs[2].fd};
  EXPECT_EQ((std::set<int>{p.a, q.a}), fds);
}

TEST_P(PollerTest, HangUpIsReportedAsReadableOrError) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kRead));
  p.close_b();
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  ASSERT_EQ(1u, evs.size());
  EXPECT_EQ(p.a, evs[0].fd);
  EXPECT_TRUE(evs[0].readable || evs[0].error);
  char c;
  EXPECT_EQ(0, ::recv(p.a, &c, 1, 0)) << "a hang-up reads as end of file";
}

TEST_P(PollerTest, HangUpWithOnlyWriteInterestIsReported) {
  Pair p;
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(0, poller_->set(p.a, kWrite));
  p.close_b();
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(p.a, evs[0].fd);
  // select/poll say writable (the write then fails with EPIPE); epoll and
  // kqueue also flag the hang-up.
  EXPECT_TRUE(evs[0].writable || evs[0].error);
}

TEST_P(PollerTest, PipeReadEndReadableAfterWrite) {
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  ASSERT_EQ(0, poller_->set(fds[0], kRead));
  std::vector<PollEvent> evs;
  EXPECT_EQ(0, poller_->wait(0, evs));
  ASSERT_EQ(1, ::write(fds[1], "x", 1));
  ASSERT_EQ(1, poller_->wait(1000, evs));
  EXPECT_EQ(fds[0], evs[0].fd);
  EXPECT_TRUE(evs[0].readable);
  poller_->remove(fds[0]);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_P(PollerTest, ManyDescriptorsEachReportedOnce) {
  const int kPairs = 500;
  rlimit saved;
  if (!raise_nofile(2 * kPairs + 64, &saved))
    GTEST_SKIP() << "cannot raise RLIMIT_NOFILE to " << 2 * kPairs + 64;
  std::vector<std::unique_ptr<Pair>> pairs;
  std::map<int, int> seen;  // fd -> times reported
  for (int i = 0; i < kPairs; ++i) {
    pairs.emplace_back(new Pair());
    ASSERT_TRUE(pairs.back()->ok()) << "pair " << i << ": " << strerror(errno);
    ASSERT_EQ(0, poller_->set(pairs.back()->a, kRead)) << strerror(errno);
    seen[pairs.back()->a] = 0;
  }
  for (auto& p : pairs) ASSERT_TRUE(put(p->b, "x"));

  // Drain each descriptor as it is reported, the way a handler would; a
  // level-triggered backend then never reports it again.
  int total = 0;
  Clock::time_point t0 = Clock::now();
  for (int round = 0; round < 100 && total < kPairs && ms_since(t0) < 10000;
       ++round) {
    std::vector<PollEvent> evs;
    int n = poller_->wait(1000, evs);
    ASSERT_GE(n, 0) << strerror(errno);
    ASSERT_EQ(static_cast<size_t>(n), evs.size());
    std::set<int> this_round;
    for (const PollEvent& e : evs) {
      ASSERT_TRUE(this_round.insert(e.fd).second)
          << "fd " << e.fd << " twice in one wait()";
      ASSERT_TRUE(seen.count(e.fd)) << "fd " << e.fd << " never registered";
      EXPECT_TRUE(e.readable);
      ++seen[e.fd];
      char c;
      ASSERT_EQ(1, ::recv(e.fd, &c, 1, 0));
      ++total;
    }
  }
  for (const auto& kv : seen) EXPECT_EQ(1, kv.second) << "fd " << kv.first;
  std::vector<PollEvent> evs;
  EXPECT_EQ(0, poller_->wait(0, evs)) << "all drained";
  for (auto& p : pairs) poller_->remove(p->a);
  pairs.clear();
  ::setrlimit(RLIMIT_NOFILE, &saved);
}

// A descriptor numbered past FD_SETSIZE, or -1 (with GTEST_SKIP reason in
// *why) when the descriptor limit cannot be raised that far.
int high_descriptor(int fd, rlimit* saved, std::string* why) {
  if (!raise_nofile(FD_SETSIZE + 16, saved)) {
    *why = "cannot raise RLIMIT_NOFILE past FD_SETSIZE";
    return -1;
  }
  int high = ::fcntl(fd, F_DUPFD, FD_SETSIZE);
  if (high < 0) *why = std::string("F_DUPFD: ") + strerror(errno);
  return high;
}

INSTANTIATE_TEST_SUITE_P(
    Poller, PollerTest,
    ::testing::ValuesIn(smtpd::poller::available_pollers()),
    [](const ::testing::TestParamInfo<std::string>& info) {
      return info.param;
    });

// The backends without select()'s FD_SETSIZE limit.
std::vector<std::string> unlimited_pollers() {
  std::vector<std::string> r;
  for (const std::string& n : smtpd::poller::available_pollers())
    if (n != "select") r.push_back(n);
  return r;
}

class PollerUnlimitedTest : public PollerTest {};

TEST_P(PollerUnlimitedTest, DescriptorPastFdSetsizeIsReported) {
  Pair p;
  ASSERT_TRUE(p.ok());
  rlimit saved;
  std::string why;
  int high = high_descriptor(p.a, &saved, &why);
  if (high < 0) GTEST_SKIP() << why;
  ASSERT_GE(high, FD_SETSIZE);
  EXPECT_EQ(0, poller_->set(high, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  EXPECT_EQ(1, poller_->wait(1000, evs));
  if (!evs.empty()) {
    EXPECT_EQ(high, evs[0].fd);
    EXPECT_TRUE(evs[0].readable);
  }
  poller_->remove(high);
  ::close(high);
  ::setrlimit(RLIMIT_NOFILE, &saved);
}

INSTANTIATE_TEST_SUITE_P(
    Poller, PollerUnlimitedTest, ::testing::ValuesIn(unlimited_pollers()),
    [](const ::testing::TestParamInfo<std::string>& info) {
      return info.param;
    });

TEST(PollerSelect, RefusesDescriptorAtFdSetsizeWithErange) {
  std::unique_ptr<Poller> sel = smtpd::poller::make_poller("select", nullptr);
  ASSERT_NE(sel, nullptr);
  Pair p;
  ASSERT_TRUE(p.ok());
  rlimit saved;
  std::string why;
  int high = high_descriptor(p.a, &saved, &why);
  if (high < 0) GTEST_SKIP() << why;
  ASSERT_GE(high, FD_SETSIZE);
  errno = 0;
  EXPECT_EQ(-1, sel->set(high, kRead));
  EXPECT_EQ(ERANGE, errno);
  errno = 0;
  EXPECT_EQ(-1, sel->set(high, 0));
  EXPECT_EQ(ERANGE, errno);
  sel->remove(high);  // never registered: harmless
  ::close(high);
  ::setrlimit(RLIMIT_NOFILE, &saved);

  // The refusal left the poller working for ordinary descriptors.
  ASSERT_EQ(0, sel->set(p.a, kRead));
  ASSERT_TRUE(put(p.b, "x"));
  std::vector<PollEvent> evs;
  ASSERT_EQ(1, sel->wait(1000, evs));
  EXPECT_EQ(p.a, evs[0].fd);
}

TEST(PollerSelect, RefusesNegativeDescriptor) {
  std::unique_ptr<Poller> sel = smtpd::poller::make_poller("select", nullptr);
  ASSERT_NE(sel, nullptr);
  errno = 0;
  EXPECT_EQ(-1, sel->set(-1, kRead));
  EXPECT_EQ(EBADF, errno);
}

TEST(PollerFactory, UnknownNameReturnsNullWithMessage) {
  std::string err;
  std::unique_ptr<Poller> p = smtpd::poller::make_poller("nope", &err);
  EXPECT_EQ(p, nullptr);
  EXPECT_NE(err.find("nope"), std::string::npos) << err;
  EXPECT_NE(err.find("poll"), std::string::npos) << "lists what there is";
}

TEST(PollerFactory, EmptyNameGivesTheFirstAvailable) {
  std::string err;
  std::unique_ptr<Poller> p = smtpd::poller::make_poller("", &err);
  ASSERT_NE(p, nullptr) << err;
  EXPECT_EQ(smtpd::poller::available_pollers().front(), p->name());
}

TEST(PollerFactory, AvailableListsPollAndSelect) {
  std::vector<std::string> names = smtpd::poller::available_pollers();
  std::set<std::string> s(names.begin(), names.end());
  EXPECT_EQ(names.size(), s.size()) << "no duplicates";
  EXPECT_TRUE(s.count("poll"));
  EXPECT_TRUE(s.count("select"));
  for (const std::string& n : names)
    EXPECT_NE(smtpd::poller::make_poller(n, nullptr), nullptr) << n;
}

}  // namespace
