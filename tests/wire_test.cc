// The smtpd binary over real TCP on 127.0.0.1: what it answers, what it
// prints on stdout, how it fails at startup and how it stops. Each test
// starts its own server ($SMTPD_BIN, default build/smtpd) on a free port.
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using testutil::Child;
using testutil::Client;
using testutil::Deadline;

const char kEnd[] = "------------ END MESSAGE ------------\n";
const char kOK[] = "250 OK\r\n";
const char k354[] = "354 End data with <CR><LF>.<CR><LF>\r\n";

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos;
       pos = hay.find(needle, pos + needle.size()))
    ++n;
  return n;
}

// Reads `field` ("Uid:", "Groups:") from /proc/PID/status as numbers.
std::vector<long> proc_status(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  std::vector<long> out;
  while (std::getline(f, line)) {
    if (line.compare(0, field.size(), field) != 0) continue;
    std::istringstream in(line.substr(field.size()));
    long v;
    while (in >> v) out.push_back(v);
  }
  return out;
}

class WireTest : public testutil::BinaryTest {
 protected:
  // A connected client whose greeting was read.
  std::unique_ptr<Client> client() {
    std::unique_ptr<Client> c(new Client);
    EXPECT_TRUE(c->connect(port));
    greeting = c->reply();
    EXPECT_EQ(greeting.substr(0, 4), "220 ");
    return c;
  }

  // HELO, MAIL, RCPT, DATA.
  void to_data(Client& c) {
    ASSERT_EQ(c.cmd("HELO example").substr(0, 4), "250 ");
    ASSERT_EQ(c.cmd("MAIL FROM:<eggs@example>"), kOK);
    ASSERT_EQ(c.cmd("RCPT TO:<spam@example>"), kOK);
    ASSERT_EQ(c.cmd("DATA"), k354);
  }

  // Waits until the server refuses new connections (it closed its
  // listening socket), probing with short-lived connections.
  bool wait_refused(int ms = 5000) {
    Deadline d(ms);
    while (!d.expired()) {
      int fd = testutil::connect_loopback(port);
      if (fd < 0 && errno == ECONNREFUSED) return true;
      if (fd >= 0) ::close(fd);
      server.pump(10);
    }
    return false;
  }

  // The server's name, from the greeting "220 NAME VERSION".
  std::string fqdn() const {
    size_t sp = greeting.find(' ', 4);
    return greeting.substr(4, sp - 4);
  }

  std::string greeting;
};

// ------------------------------------------------------------------ transactions

TEST_F(WireTest, TransactionIsPrintedByteForByteAndFlushed) {
  start();
  auto c = client();
  ASSERT_EQ(c->cmd("EHLO example").substr(0, 4), "250-");
  ASSERT_EQ(c->cmd("MAIL FROM:<eggs@example> body=8bitmime"), kOK);
  ASSERT_EQ(c->cmd("RCPT TO:<spam@example>"), kOK);
  ASSERT_EQ(c->cmd("DATA"), k354);
  EXPECT_EQ(c->cmd("Subject: wire\r\nX-Q: it's\r\n\r\n..dot\r\nh\xc3\xa9\tx\r\n."), kOK);
  // The server is still running: the output must already be flushed.
  ASSERT_TRUE(server.read_out_until(kEnd, 5000)) << server.out;
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\n"
            "mail options: ['BODY=8BITMIME']\n"
            "b'Subject: wire'\n"
            "b\"X-Q: it's\"\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'.dot'\n"
            "b'h\\xc3\\xa9\\tx'\n"
            "------------ END MESSAGE ------------\n");
  EXPECT_EQ(c->cmd("QUIT"), "221 Bye\r\n");
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(WireTest, EachMessageIsPrintedBeforeTheNextArrives) {
  start();
  auto c = client();
  to_data(*c);
  ASSERT_EQ(c->cmd("one\r\n."), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\nb'one'\n" + std::string(kEnd));
  ASSERT_EQ(c->cmd("MAIL FROM:<eggs@example>"), kOK);
  ASSERT_EQ(c->cmd("RCPT TO:<spam@example>"), kOK);
  ASSERT_EQ(c->cmd("DATA"), k354);
  ASSERT_EQ(c->cmd("Subject: two\r\n\r\nbody\r\n."), kOK);
  size_t first = server.out.size();
  ASSERT_TRUE(server.read_out_until(kEnd, 5000, first));
  EXPECT_EQ(server.out.substr(first),
            "---------- MESSAGE FOLLOWS ----------\n"
            "b'Subject: two'\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'body'\n" + std::string(kEnd));
}

TEST_F(WireTest, DottedClassNameIsTheSameClass) {
  server = testutil::start_server({"-n", "-c", "smtpd.DebuggingServer"}, &port);
  ASSERT_TRUE(server.running()) << server.err;
  auto c = client();
  to_data(*c);
  EXPECT_EQ(c->cmd("dotted\r\n."), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_NE(server.out.find("b'dotted'\n"), std::string::npos);
}

TEST_F(WireTest, GreetingAndHeloNameAgree) {
  start();
  auto c = client();
  EXPECT_EQ(c->cmd("HELO example"), "250 " + fqdn() + "\r\n");
}

TEST_F(WireTest, WholeSessionInOneWrite) {
  start();
  auto c = client();
  ASSERT_TRUE(c->send(
      "EHLO example\r\nMAIL FROM:<eggs@example>\r\nRCPT TO:<spam@example>\r\n"
      "DATA\r\nSubject: pipelined\r\n\r\nall in one write\r\n.\r\nQUIT\r\n"));
  std::string all;
  ASSERT_TRUE(c->wait_closed(5000, &all));
  EXPECT_EQ(all, "250-" + fqdn() + "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n"
                 "250 HELP\r\n" + kOK + kOK + k354 + kOK + "221 Bye\r\n");
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_NE(server.out.find("b'all in one write'\n"), std::string::npos);
}

TEST_F(WireTest, DebugLinesGoToStderrNotStdout) {
  start({"-d"});
  auto c = client();
  to_data(*c);
  ASSERT_EQ(c->cmd("hi\r\n."), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\nb'hi'\n" + std::string(kEnd));
  Deadline d(3000);
  while (server.err.find("Data:") == std::string::npos && !d.expired())
    server.pump(20);
  EXPECT_NE(server.err.find("Data:"), std::string::npos);
}

TEST_F(WireTest, LargeMessageIsPrintedWhole) {
  start();
  auto c = client();
  to_data(*c);
  std::string line(98, 'm');
  std::string body;
  for (int i = 0; i < 20000; ++i) body += line + "\r\n";
  ASSERT_TRUE(c->send(body + ".\r\n", 20000));
  // The server blocks on a full stdout pipe: keep reading it meanwhile.
  std::string r;
  Deadline d(20000);
  while (r.empty() && !d.expired()) {
    server.pump(5);
    r = c->reply(5);
  }
  EXPECT_EQ(r, kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 10000));
  EXPECT_EQ(count(server.out, "b'" + line + "'\n"), 20000u);
}

// Printing is DebuggingServer's delivery: with stdout gone the client is
// told to retry (451), never 250, and the session goes on.
TEST_F(WireTest, ClosedStdoutGets451AndTheSessionGoesOn) {
  start();
  ::close(server.out_fd);
  server.out_fd = -1;
  auto c = client();
  to_data(*c);
  EXPECT_EQ(c->cmd("lost printout\r\n.").substr(0, 4), "451 ");
  EXPECT_EQ(c->cmd("NOOP"), kOK);
  auto other = client();
  EXPECT_EQ(other->cmd("NOOP"), kOK);
}

TEST_F(WireTest, Ipv6Loopback) {
  int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  socklen_t len = sizeof sin6;
  if (probe < 0 || ::bind(probe, reinterpret_cast<sockaddr*>(&sin6), len) != 0 ||
      ::getsockname(probe, reinterpret_cast<sockaddr*>(&sin6), &len) != 0) {
    if (probe >= 0) ::close(probe);
    GTEST_SKIP() << "no IPv6 loopback";
  }
  int p6 = ntohs(sin6.sin6_port);
  ::close(probe);
  server = testutil::spawn({testutil::smtpd_bin(), "-n", "-c", "DebuggingServer",
                            "[::1]:" + std::to_string(p6)});
  int fd = -1;
  Deadline d(5000);
  while (fd < 0 && !d.expired()) {
    fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6) != 0) {
      ::close(fd);
      fd = -1;
      server.pump(10);
    }
  }
  ASSERT_GE(fd, 0) << server.err;
  Client c(fd);
  EXPECT_EQ(c.reply().substr(0, 4), "220 ");
  c.cmd("HELO example");
  c.cmd("MAIL FROM:<eggs@example>");
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("Subject: v6\r\n\r\nx\r\n."), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_NE(server.out.find("b'X-Peer: ::1'\n"), std::string::npos) << server.out;
}

// ------------------------------------------------------------------ added options

TEST_F(WireTest, TimeoutOptionClosesIdleSessions) {
  start({"--timeout", "0.2"});
  auto c = client();
  EXPECT_EQ(c->reply(5000), "421 " + fqdn() + " Error: timeout exceeded\r\n");
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(WireTest, MaxConnectionsOptionTurnsAwayTheExtraClient) {
  start({"--max-connections", "1"});
  // The start-up probe may hold the one slot until the server sees it
  // closed: retry until a client is greeted.
  std::unique_ptr<Client> first;
  for (int i = 0; i < 100; ++i) {
    first.reset(new Client);
    ASSERT_TRUE(first->connect(port));
    greeting = first->reply();
    if (greeting.substr(0, 4) == "220 ") break;
    first->wait_closed(1000);
  }
  ASSERT_EQ(greeting.substr(0, 4), "220 ");
  Client second;
  ASSERT_TRUE(second.connect(port));
  EXPECT_EQ(second.reply(), "421 " + fqdn() + " Error: too many connections\r\n");
  EXPECT_TRUE(second.wait_closed());
  EXPECT_EQ(first->cmd("NOOP"), kOK);
}

TEST_F(WireTest, MaxRecipientsOptionRefusesTheExtraRecipient) {
  start({"--max-recipients", "1"});
  auto c = client();
  c->cmd("HELO example");
  c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ(c->cmd("RCPT TO:<a@example>"), kOK);
  EXPECT_EQ(c->cmd("RCPT TO:<b@example>"), "452 4.5.3 Error: too many recipients\r\n");
}

TEST_F(WireTest, WorkersServeAndAllStopOnSigterm) {
  start({"-j", "3"});
  // The workers are the server's children (forked before it listens).
  std::string path = "/proc/" + std::to_string(server.pid) + "/task/" +
                     std::to_string(server.pid) + "/children";
  std::vector<long> kids;
  Deadline d(5000);
  while (kids.size() < 2 && !d.expired()) {
    std::ifstream f(path);
    kids.clear();
    long k;
    while (f >> k) kids.push_back(k);
    if (kids.size() < 2) server.pump(10);
  }
  ASSERT_EQ(kids.size(), 2u);
  // Killing the parent alone would orphan the workers: if the test stops
  // early, kill them too.
  struct Reaper {
    std::vector<long>& pids;
    bool done = false;
    ~Reaper() {
      if (!done)
        for (long k : pids) ::kill(static_cast<pid_t>(k), SIGKILL);
    }
  } reaper{kids};
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 12; ++i) clients.push_back(client());
  for (auto& c : clients) EXPECT_EQ(c->cmd("NOOP"), kOK);
  clients.clear();
  server.signal(SIGTERM);
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(server.exited_with(0)) << server.status;
  bool all_gone = true;
  for (long k : kids) all_gone = all_gone && ::kill(static_cast<pid_t>(k), 0) != 0;
  EXPECT_TRUE(all_gone) << "a worker outlived the server";
  reaper.done = all_gone;
}

// ------------------------------------------------------------------ bad input

TEST_F(WireTest, BinaryGarbageGets5xxAndTheSessionGoesOn) {
  start();
  auto c = client();
  // Deterministic bytes without CR or LF; each line is one bad command.
  uint32_t x = 12345;
  for (int line = 0; line < 20; ++line) {
    std::string junk;
    for (int i = 0; i < 64; ++i) {
      x = x * 1103515245u + 12345u;
      char b = static_cast<char>(0x80 | (x >> 24));
      junk.push_back(b);
    }
    std::string r = c->cmd(junk);
    ASSERT_FALSE(r.empty()) << "line " << line;
    EXPECT_EQ(r[0], '5') << r;
  }
  EXPECT_EQ(c->cmd("NOOP"), kOK);
  auto other = client();
  EXPECT_EQ(other->cmd("NOOP"), kOK);
}

TEST_F(WireTest, NulBytesInACommandGet500) {
  start();
  auto c = client();
  std::string r = c->cmd(std::string("NO\0OP", 5));
  EXPECT_EQ(r.substr(0, 4), "500 ");
  EXPECT_EQ(c->cmd("NOOP"), kOK);
}

TEST_F(WireTest, NulBytesInTheBodyArePrintedEscaped) {
  start();
  auto c = client();
  to_data(*c);
  EXPECT_EQ(c->cmd(std::string("a\0b\r\n.", 6)), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_NE(server.out.find("b'a\\x00b'\n"), std::string::npos) << server.out;
}

TEST_F(WireTest, TenMegabyteLineWithoutCrLfIsRefusedAndTheServerStaysUp) {
  start();
  auto c = client();
  ASSERT_TRUE(c->send("NOOP " + std::string(10 << 20, 'A'), 20000));
  std::string r = c->cmd("", 10000);
  // Either a 500 and the session goes on, or the server hangs up.
  if (!r.empty()) {
    EXPECT_EQ(r, "500 Error: line too long\r\n");
    EXPECT_EQ(c->cmd("NOOP"), kOK);
  }
  auto other = client();
  EXPECT_EQ(other->cmd("NOOP"), kOK);
}

TEST_F(WireTest, TenMegabyteMessageLineOverTheLimitGets552) {
  start({"-s", "1000"});
  auto c = client();
  to_data(*c);
  ASSERT_TRUE(c->send(std::string(10 << 20, 'B'), 20000));
  EXPECT_EQ(c->cmd("\r\n.", 10000), "552 Error: Too much mail data\r\n");
  EXPECT_EQ(c->cmd("NOOP"), kOK);
}

TEST_F(WireTest, ClientVanishingMidDataLosesOnlyItsMessage) {
  start();
  {
    auto gone = client();
    to_data(*gone);
    ASSERT_TRUE(gone->send("Subject: lost\r\n\r\nnever finished\r\n"));
  }
  auto c = client();
  to_data(*c);
  ASSERT_EQ(c->cmd("Subject: kept\r\n\r\narrives\r\n."), kOK);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000));
  EXPECT_EQ(count(server.out, "MESSAGE FOLLOWS"), 1u);
  EXPECT_EQ(server.out.find("lost"), std::string::npos);
  EXPECT_NE(server.out.find("b'arrives'"), std::string::npos);
}

TEST_F(WireTest, TwoHundredConcurrentConnectionsAreAllGreeted) {
  start();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 200; ++i) {
    clients.emplace_back(new Client);
    ASSERT_TRUE(clients.back()->connect(port)) << i;
  }
  int greeted = 0;
  for (auto& c : clients)
    if (c->reply(5000).substr(0, 4) == "220 ") ++greeted;
  EXPECT_EQ(greeted, 200);
  EXPECT_EQ(clients.front()->cmd("NOOP"), kOK);
  EXPECT_EQ(clients.back()->cmd("NOOP"), kOK);
}

// ------------------------------------------------------------------ startup errors

TEST_F(WireTest, PortInUseIsExitOneWithOneLineNamingTheAddress) {
  int busy_port = 0;
  int busy = testutil::listen_any(&busy_port);
  ASSERT_GE(busy, 0);
  std::string where = "127.0.0.1:" + std::to_string(busy_port);
  Child c = testutil::run({testutil::smtpd_bin(), "-n", "-c", "DebuggingServer", where});
  ::close(busy);
  EXPECT_TRUE(c.exited_with(1));
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(count(c.err, "\n"), 1u) << c.err;
  EXPECT_NE(c.err.find(where), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("Address already in use"), std::string::npos) << c.err;
}

TEST_F(WireTest, UnknownClassIsExitOne) {
  Child c = testutil::run({testutil::smtpd_bin(), "-n", "-c", "NoSuchServer",
                           "127.0.0.1:" + std::to_string(testutil::free_port())});
  EXPECT_TRUE(c.exited_with(1));
  EXPECT_EQ(c.out, "");
  EXPECT_NE(c.err.find("NoSuchServer"), std::string::npos) << c.err;
}

TEST_F(WireTest, Smtputf8WithTheDefaultClassIsExitOne) {
  Child c = testutil::run({testutil::smtpd_bin(), "-n", "-u",
                           "127.0.0.1:" + std::to_string(testutil::free_port())});
  EXPECT_TRUE(c.exited_with(1));
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(c.err, "PureProxy does not support SMTPUTF8.\n");
}

TEST_F(WireTest, BadLocalSpecIsExitOneWithUsage) {
  Child c = testutil::run({testutil::smtpd_bin(), "-n", "-c", "DebuggingServer", "foo"});
  EXPECT_TRUE(c.exited_with(1));
  EXPECT_EQ(c.out, "");
  EXPECT_NE(c.err.find("Usage:"), std::string::npos);
  EXPECT_NE(c.err.find("Bad local spec: foo\n"), std::string::npos);
}

TEST_F(WireTest, HelpIsExitZeroOnStderr) {
  Child c = testutil::run({testutil::smtpd_bin(), "-h"});
  EXPECT_TRUE(c.exited_with(0));
  EXPECT_EQ(c.out, "");
  EXPECT_NE(c.err.find("Usage:"), std::string::npos);
}

TEST_F(WireTest, VersionIsOneLineOnStdout) {
  Child c = testutil::run({testutil::smtpd_bin(), "-V"});
  EXPECT_TRUE(c.exited_with(0));
  EXPECT_EQ(c.err, "");
  EXPECT_EQ(count(c.out, "\n"), 1u);
  EXPECT_EQ(c.out.back(), '\n');
}

TEST_F(WireTest, WithoutNosetuidANonRootUserIsRefused) {
  if (geteuid() == 0) GTEST_SKIP() << "running as root";
  Child c = testutil::run({testutil::smtpd_bin(), "-c", "DebuggingServer",
                           "127.0.0.1:" + std::to_string(testutil::free_port())});
  EXPECT_TRUE(c.exited_with(1));
  EXPECT_EQ(c.out, "");
  EXPECT_NE(c.err.find("Cannot setuid \"nobody\"; try running with -n option."),
            std::string::npos) << c.err;
}

TEST_F(WireTest, WithoutNosetuidRootBecomesNobody) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  passwd* pw = getpwnam("nobody");
  if (!pw) GTEST_SKIP() << "no user nobody";
  server = testutil::start_server({"-c", "DebuggingServer"}, &port);
  ASSERT_TRUE(server.running()) << server.err;
  // A reply comes only from the loop, which runs after the drop.
  auto c = client();
  EXPECT_EQ(c->cmd("NOOP"), kOK);
  long uid = pw->pw_uid, gid = pw->pw_gid;
  EXPECT_EQ(proc_status(server.pid, "Uid:"), (std::vector<long>{uid, uid, uid, uid}));
  EXPECT_EQ(proc_status(server.pid, "Gid:"), (std::vector<long>{gid, gid, gid, gid}));
  EXPECT_EQ(proc_status(server.pid, "Groups:"), std::vector<long>{gid});
}

// ------------------------------------------------------------------ stopping

TEST_F(WireTest, SigtermWhileIdleExitsZero) {
  start();
  server.signal(SIGTERM);
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(server.exited_with(0)) << server.status;
  EXPECT_EQ(server.out, "");
}

TEST_F(WireTest, SigtermTellsIdleClientsAndExitsZero) {
  start();
  auto c = client();
  ASSERT_EQ(c->cmd("HELO example").substr(0, 4), "250 ");
  server.signal(SIGTERM);
  EXPECT_EQ(c->reply(), "421 " + fqdn() + " Service shutting down\r\n");
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(server.exited_with(0)) << server.status;
}

TEST_F(WireTest, SigintActsLikeSigterm) {
  start();
  server.signal(SIGINT);
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(server.exited_with(0)) << server.status;
}

TEST_F(WireTest, SigtermDuringDataLetsTheMessageFinish) {
  start();
  auto c = client();
  to_data(*c);
  ASSERT_TRUE(c->send("Subject: late\r\n\r\nfirst half\r\n"));
  server.signal(SIGTERM);
  ASSERT_TRUE(wait_refused());
  EXPECT_EQ(c->cmd("second half\r\n."), kOK);
  EXPECT_EQ(c->reply(), "421 " + fqdn() + " Service shutting down\r\n");
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(server.exited_with(0)) << server.status;
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\n"
            "b'Subject: late'\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'first half'\n"
            "b'second half'\n" + std::string(kEnd));
}

TEST_F(WireTest, SecondSigtermExitsAtOnce) {
  start();
  auto c = client();
  to_data(*c);
  server.signal(SIGTERM);
  ASSERT_TRUE(wait_refused());
  server.signal(SIGTERM);
  ASSERT_TRUE(server.wait_exit(5000));
  EXPECT_TRUE(WIFEXITED(server.status)) << server.status;
  EXPECT_EQ(server.out, "");
}

}  // namespace
