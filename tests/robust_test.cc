// Fault tests, fast enough for every `make test`: clients that vanish at
// every byte of a transaction, slowloris clients, too many connections or
// recipients, a client that pipelines without reading, half-closes. The
// server is a DebuggingServer on 127.0.0.1:0 in this process, printing into
// a temporary file; the test drives its socket_map (backend from
// $SMTPD_POLLER) and plays the clients. Every wait has a deadline.
// The long runs (10,000 connections, 100,000 messages) are in tests/stress.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtpd/smtpd.h"

namespace {

using smtpd::DebuggingServer;
using smtpd::SMTPChannel;
using smtpd::ServerOptions;
using smtpd::asyncore::socket_map;
using Clock = std::chrono::steady_clock;

const char kEndMessage[] = "------------ END MESSAGE ------------\n";

bool expired(Clock::time_point deadline) { return Clock::now() >= deadline; }

Clock::time_point after_ms(int ms) {
  return Clock::now() + std::chrono::milliseconds(ms);
}

// Final reply lines ("250 OK", not "250-SIZE") among complete lines.
std::vector<std::string> replies(const std::string& in) {
  std::vector<std::string> out;
  size_t pos = 0, eol;
  while ((eol = in.find("\r\n", pos)) != std::string::npos) {
    std::string line = in.substr(pos, eol - pos);
    if (line.size() < 4 || line[3] != '-') out.push_back(line);
    pos = eol + 2;
  }
  return out;
}

// The server under test. Records the last channel made and the envelope of
// each message; prints as DebuggingServer does, into `out_fd`.
class Server : public DebuggingServer {
 public:
  Server(const ServerOptions& o, socket_map* map, int out_fd)
      : DebuggingServer({"127.0.0.1", 0}, {"127.0.0.1", 25}, o, map, out_fd) {}

  void make_channel(int fd, const sockaddr_storage& addr,
                    socklen_t len) override {
    last = map().adopt(std::unique_ptr<SMTPChannel>(
        new SMTPChannel(*this, fd, addr, len, &map())));
  }
  void on_channel_closed(SMTPChannel& ch) override {
    if (&ch == last) last = nullptr;
  }
  std::optional<std::string> process_message(
      const smtpd::Peer& peer, const std::string& mailfrom,
      const std::vector<std::string>& rcpttos, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options) override {
    last_rcpttos = rcpttos;
    return DebuggingServer::process_message(peer, mailfrom, rcpttos, data,
                                            mail_options, rcpt_options);
  }

  SMTPChannel* last = nullptr;
  std::vector<std::string> last_rcpttos;
};

// One client socket, non-blocking; `in` collects what the server sent.
class Client {
 public:
  // Connects over TCP to 127.0.0.1:port (the kernel completes the
  // handshake before the server accepts).
  explicit Client(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0)
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (fd_ >= 0) ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  // Takes one end of a socketpair.
  struct Adopt {};
  Client(Adopt, int fd) : fd_(fd) {
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Reads what is there; notes end of file or a reset.
  void poll_input() {
    if (fd_ < 0 || eof) return;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        eof = true;
      return;
    }
  }
  // Writes as much of `s` as the socket takes now; returns that count.
  size_t write_some(const char* s, size_t len) {
    ssize_t n = ::send(fd_, s, len, MSG_NOSIGNAL);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  void shut_wr() { ::shutdown(fd_, SHUT_WR); }
  // close() after SO_LINGER 0: the peer sees a reset, not an end of file.
  void abort() {
    linger lg{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string in;
  bool eof = false;

 private:
  int fd_ = -1;
};

const char kTransaction[] =
    "EHLO client.example\r\n"
    "MAIL FROM:<alice@example.org> SIZE=40\r\n"
    "RCPT TO:<bob@example.org>\r\n"
    "DATA\r\n"
    "Subject: t\r\n"
    "\r\n"
    "..dot\r\n"
    "body\r\n"
    ".\r\n"
    "QUIT\r\n";

// How the client goes away after writing part of kTransaction.
enum class Hangup { close, reset, half_close };

class RobustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = ::tmpfile();
    ASSERT_NE(out_, nullptr);
  }
  void TearDown() override {
    server_.reset();
    if (out_) ::fclose(out_);
  }

  Server& start(ServerOptions o = ServerOptions()) {
    server_.reset(new Server(o, &map_, ::fileno(out_)));
    return *server_;
  }
  int port() const { return server_->bound_port(); }

  // Runs passes of up to 5 ms, reading every listed client after each,
  // until done() or the deadline.
  bool pump(const std::function<bool()>& done, std::vector<Client*> clients,
            int ms = 3000) {
    Clock::time_point deadline = after_ms(ms);
    for (;;) {
      for (Client* c : clients) c->poll_input();
      if (done()) return true;
      if (expired(deadline)) return false;
      map_.poll_once(5);
    }
  }
  bool wait_replies(Client& c, size_t n, int ms = 3000) {
    return pump([&] { return replies(c.in).size() >= n || c.eof; }, {&c}, ms) &&
           replies(c.in).size() >= n;
  }
  bool wait_closed(Client& c, int ms = 3000) {
    return pump([&] { return c.eof; }, {&c}, ms);
  }
  bool wait_no_channels(int ms = 3000) {
    return pump([&] { return server_->channel_count == 0; }, {}, ms);
  }
  // Writes all of `s`, running passes while the socket is full.
  bool send_all(Client& c, const std::string& s, int ms = 3000) {
    size_t off = 0;
    return pump(
        [&] {
          off += c.write_some(s.data() + off, s.size() - off);
          return off == s.size();
        },
        {&c}, ms);
  }
  // A complete session; returns the final reply lines after the greeting.
  std::vector<std::string> session(const std::string& script, size_t n) {
    Client c(port());
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(wait_replies(c, 1));
    EXPECT_TRUE(send_all(c, script));
    EXPECT_TRUE(wait_replies(c, n + 1));
    std::vector<std::string> r = replies(c.in);
    if (!r.empty()) r.erase(r.begin());
    return r;
  }

  // Messages DebuggingServer has printed so far.
  size_t printed() {
    std::string all;
    char buf[65536];
    ssize_t n;
    for (off_t off = 0;
         (n = ::pread(::fileno(out_), buf, sizeof buf, off)) > 0; off += n)
      all.append(buf, static_cast<size_t>(n));
    size_t count = 0;
    for (size_t p = 0; (p = all.find(kEndMessage, p)) != std::string::npos;
         p += sizeof kEndMessage - 1)
      ++count;
    return count;
  }

  void disconnect_at_every_offset(Hangup how);

  socket_map map_;
  FILE* out_ = nullptr;
  std::unique_ptr<Server> server_;
};

// ------------------------------------------------------------------ tests

// Every prefix of a transaction, then the client vanishes. Nothing may be
// printed unless the final "." line arrived, the session must go away, and
// the next client (the next iteration, and one at the end) is served.
TEST_F(RobustTest, DisconnectAtEveryByteOffsetClose) {
  start();
  disconnect_at_every_offset(Hangup::close);
}

TEST_F(RobustTest, DisconnectAtEveryByteOffsetReset) {
  start();
  disconnect_at_every_offset(Hangup::reset);
}

TEST_F(RobustTest, DisconnectAtEveryByteOffsetHalfClose) {
  start();
  disconnect_at_every_offset(Hangup::half_close);
}

void RobustTest::disconnect_at_every_offset(Hangup how) {
  const std::string full = kTransaction;
  const size_t complete = full.find("\r\n.\r\n") + 5;  // message is whole
  for (size_t k = 0; k <= full.size(); ++k) {
    SCOPED_TRACE("offset " + std::to_string(k));
    size_t before = printed();
    {
      Client c(port());
      ASSERT_TRUE(c.ok());
      ASSERT_TRUE(wait_replies(c, 1)) << "no greeting";
      ASSERT_EQ(replies(c.in)[0].substr(0, 4), "220 ");
      ASSERT_TRUE(send_all(c, full.substr(0, k)));
      if (how == Hangup::close) {
        c.close();
      } else if (how == Hangup::reset) {
        c.abort();
      } else {
        c.shut_wr();
        // Every complete command still gets its reply, then the close.
        ASSERT_TRUE(wait_closed(c)) << "server kept a half-closed session";
        std::vector<std::string> r = replies(c.in);
        size_t lines = 0;
        for (size_t p = 0; (p = full.find("\r\n", p)) != std::string::npos &&
                           p + 2 <= k;
             p += 2)
          ++lines;
        // Lines in DATA get no reply: 4 commands, the message, QUIT.
        size_t want = 1 + std::min<size_t>(lines, 4);
        if (k >= complete) ++want;
        if (k == full.size()) ++want;
        EXPECT_EQ(r.size(), want);
      }
      ASSERT_TRUE(wait_no_channels()) << "session left open";
    }
    size_t got = printed() - before;
    if (k < complete)
      EXPECT_EQ(got, 0u) << "incomplete message was printed";
    else if (how == Hangup::reset)
      EXPECT_LE(got, 1u);  // a reset may discard data not yet read
    else
      EXPECT_EQ(got, 1u);
  }
  size_t whole = full.size() - complete + 1;  // prefixes with the message
  if (how == Hangup::reset)
    EXPECT_LE(printed(), whole);
  else
    EXPECT_EQ(printed(), whole);
  // Still serving.
  std::vector<std::string> r = session(kTransaction, 6);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[4], "250 OK");
  EXPECT_EQ(r[5], "221 Bye");
}

TEST_F(RobustTest, SlowlorisIsCutByTheCommandTimeout) {
  ServerOptions o;
  o.timeout = 0.3;
  start(o);
  Client c(port());
  ASSERT_TRUE(wait_replies(c, 1));
  ASSERT_TRUE(send_all(c, "EHLO slow.example\r\n"));
  ASSERT_TRUE(wait_replies(c, 2));
  // One byte every 20 ms, never a whole line: 200 bytes would take 4 s.
  const std::string drip(200, 'x');
  size_t sent = 0;
  while (sent < drip.size() && !c.eof) {
    sent += c.write_some(drip.data() + sent, 1);
    Clock::time_point next = after_ms(20);
    pump([&] { return c.eof || expired(next); }, {&c}, 100);
  }
  EXPECT_TRUE(c.eof) << "the session outlived the drip";
  EXPECT_LT(sent, drip.size());
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].substr(0, 4), "421 ");
  EXPECT_NE(r[2].find("timeout"), std::string::npos);
  EXPECT_TRUE(wait_no_channels());
}

// In DATA the timer restarts on every read (RFC 5321 4.5.3.2.6, and
// ChannelTest.DataTimeoutCountsFromTheLastRead), so the cut comes when the
// client stops sending, here in the middle of a line.
TEST_F(RobustTest, ClientStalledInDataIsCutByTheDataTimeout) {
  ServerOptions o;
  o.timeout = 60;
  o.data_timeout = 0.3;
  start(o);
  Client c(port());
  ASSERT_TRUE(wait_replies(c, 1));
  ASSERT_TRUE(send_all(c, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                          "DATA\r\nSubject: stalled\r\n\r\nnever finis"));
  ASSERT_TRUE(wait_replies(c, 5));
  ASSERT_EQ(replies(c.in)[4].substr(0, 4), "354 ");
  ASSERT_TRUE(wait_closed(c, 10000)) << "a stalled DATA session was kept";
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[5].substr(0, 4), "421 ");
  EXPECT_TRUE(wait_no_channels());
  EXPECT_EQ(printed(), 0u);
}

TEST_F(RobustTest, ConnectionsPastTheCapGet421AndTheRestAreServed) {
  ServerOptions o;
  o.max_connections = 2;
  Server& s = start(o);
  Client a(port()), b(port());
  ASSERT_TRUE(wait_replies(a, 1));
  ASSERT_TRUE(wait_replies(b, 1));
  ASSERT_EQ(s.channel_count, 2u);

  Client c(port());
  ASSERT_TRUE(wait_closed(c));
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].substr(0, 4), "421 ");
  EXPECT_NE(r[0].find("too many connections"), std::string::npos);
  EXPECT_EQ(s.channel_count, 2u);

  // The two held sessions still work; after one leaves, a new one is let in.
  ASSERT_TRUE(send_all(b, "NOOP\r\n"));
  ASSERT_TRUE(wait_replies(b, 2));
  EXPECT_EQ(replies(b.in)[1], "250 OK");
  a.close();
  ASSERT_TRUE(pump([&] { return s.channel_count == 1; }, {}));
  Client d(port());
  ASSERT_TRUE(wait_replies(d, 1));
  EXPECT_EQ(replies(d.in)[0].substr(0, 4), "220 ");
  EXPECT_FALSE(d.eof);
}

TEST_F(RobustTest, RecipientsPastTheCapGet452AndTheMessageGoesToTheRest) {
  ServerOptions o;
  o.max_recipients = 3;
  Server& s = start(o);
  std::vector<std::string> r = session(
      "EHLO x\r\nMAIL FROM:<a@b>\r\n"
      "RCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nRCPT TO:<r4@x>\r\n"
      "DATA\r\nhello\r\n.\r\n"
      "MAIL FROM:<a@b>\r\nRCPT TO:<r5@x>\r\nQUIT\r\n",
      11);
  ASSERT_EQ(r.size(), 11u);
  EXPECT_EQ(r[4], "250 OK");
  EXPECT_EQ(r[5].substr(0, 4), "452 ");
  EXPECT_EQ(r[6].substr(0, 4), "354 ");
  EXPECT_EQ(r[7], "250 OK");
  EXPECT_EQ(r[9], "250 OK");  // the count starts again per message
  EXPECT_EQ(r[10], "221 Bye");
  EXPECT_EQ(s.last_rcpttos, (std::vector<std::string>{"r1@x", "r2@x", "r3@x"}));
  EXPECT_EQ(printed(), 1u);
}

// A client pipelines NOOPs and never reads. The server must stop reading
// once its queued replies pass ac_out_limit instead of queueing without
// bound; when the client finally reads, every reply is there.
TEST_F(RobustTest, ClientThatNeverReadsCannotGrowTheOutputQueue) {
  Server& s = start();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int small = 16384;
  for (int fd : sv) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  Client c(Client::Adopt{}, sv[1]);
  sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  addr.ss_family = AF_UNIX;
  s.make_channel(sv[0], addr, sizeof(sa_family_t));
  SMTPChannel* ch = s.last;
  ASSERT_NE(ch, nullptr);

  // The stream is "NOOP\r\n" repeated; `written` is where it stands.
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += "NOOP\r\n";
  size_t written = 0, max_pending = 0;
  int stalled = 0;  // passes in a row in which nothing could be written
  Clock::time_point deadline = after_ms(10000);
  while (stalled < 50 && !expired(deadline) && written < (64u << 20)) {
    size_t n = c.write_some(batch.data() + written % 6, batch.size() - 6);
    written += n;
    stalled = n ? 0 : stalled + 1;
    map_.poll_once(stalled ? 2 : 0);
    ASSERT_EQ(s.last, ch);
    max_pending = std::max(max_pending, ch->output_pending());
  }
  ASSERT_EQ(stalled, 50) << "the server kept reading: " << written << " bytes";
  // One read (ac_in_buffer_size bytes of NOOPs) may land past the limit.
  size_t bound = ch->ac_out_limit +
                 8 * (SMTPChannel::ac_in_buffer_size / 6 + 1);
  EXPECT_LE(max_pending, bound);
  EXPECT_GT(max_pending, ch->ac_out_limit / 2) << "the limit was never near";
  EXPECT_LT(written, size_t(8) << 20);

  // Finish the command cut by the last write, then read: one "250 OK" per
  // NOOP, after the greeting.
  if (written % 6) {
    ASSERT_TRUE(send_all(c, batch.substr(written % 6, 6 - written % 6)));
  }
  size_t want = (written + 5) / 6 + 1;
  ASSERT_TRUE(pump([&] { return replies(c.in).size() >= want; }, {&c}, 20000))
      << replies(c.in).size() << " of " << want << " replies";
  std::vector<std::string> r = replies(c.in);
  EXPECT_EQ(r.size(), want);
  EXPECT_EQ(std::count(r.begin() + 1, r.end(), "250 OK"),
            static_cast<long>(want - 1));
  EXPECT_EQ(ch->output_pending(), 0u);
}

// The same client, with a short command timeout: once the server has
// stopped reading, the timer runs out and the session must go, even though
// the 421 it queues can never be delivered. Regression test for 4312d44:
// the channel used to wait for that 421 to drain for ever, holding a slot
// and up to ac_out_limit bytes per such client.
TEST_F(RobustTest, ClientThatNeverReadsIsDroppedAfterTheTimeout) {
  ServerOptions o;
  o.timeout = 0.3;
  Server& s = start(o);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int small = 16384;
  for (int fd : sv) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  Client c(Client::Adopt{}, sv[1]);
  sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  addr.ss_family = AF_UNIX;
  s.make_channel(sv[0], addr, sizeof(sa_family_t));
  ASSERT_EQ(s.channel_count, 1u);

  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += "NOOP\r\n";
  size_t written = 0;
  Clock::time_point deadline = after_ms(5000);
  while (s.channel_count > 0 && !expired(deadline)) {
    written += c.write_some(batch.data() + written % 6, batch.size() - 6);
    map_.poll_once(5);
  }
  EXPECT_EQ(s.channel_count, 0u)
      << "a client that never reads kept its session past the timeout ("
      << written << " bytes written)";
}

TEST_F(RobustTest, HalfCloseAfterQuitStillGets221) {
  start();
  Client c(port());
  ASSERT_TRUE(wait_replies(c, 1));
  ASSERT_TRUE(send_all(c, "QUIT\r\n"));
  c.shut_wr();
  ASSERT_TRUE(wait_closed(c));
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1], "221 Bye");
}

TEST_F(RobustTest, HalfCloseAfterAPipelinedTransactionGetsEveryReply) {
  start();
  Client c(port());
  ASSERT_TRUE(c.ok());
  // Written before the greeting is even read, then the sending side shut.
  ASSERT_TRUE(send_all(c, kTransaction));
  c.shut_wr();
  ASSERT_TRUE(wait_closed(c));
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 7u);
  EXPECT_EQ(r[0].substr(0, 4), "220 ");
  EXPECT_EQ(r[4].substr(0, 4), "354 ");
  EXPECT_EQ(r[5], "250 OK");
  EXPECT_EQ(r[6], "221 Bye");
  EXPECT_EQ(printed(), 1u);
}

TEST_F(RobustTest, HalfCloseWithoutQuitAnswersThenCloses) {
  start();
  Client c(port());
  ASSERT_TRUE(send_all(c, "NOOP\r\nNOO"));
  c.shut_wr();
  ASSERT_TRUE(wait_closed(c));
  std::vector<std::string> r = replies(c.in);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1], "250 OK");
  EXPECT_TRUE(wait_no_channels());
}

// A megabyte without a line end is answered once the line ends, and the
// session goes on.
TEST_F(RobustTest, MegabyteCommandLineIsRefusedAndTheSessionGoesOn) {
  start();
  std::vector<std::string> r =
      session(std::string(1 << 20, 'A') + "\r\nNOOP\r\nQUIT\r\n", 3);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], "500 Error: line too long");
  EXPECT_EQ(r[1], "250 OK");
  EXPECT_EQ(r[2], "221 Bye");
}

// Sessions dropped mid-transaction leave no state behind: many of them in
// a row, then a clean transaction on a new connection.
TEST_F(RobustTest, ManyAbandonedSessionsThenACleanOne) {
  start();
  for (int i = 0; i < 50; ++i) {
    Client c(port());
    ASSERT_TRUE(wait_replies(c, 1));  // accepted: the server knows it
    ASSERT_TRUE(send_all(c, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                            "DATA\r\npartial"));
    if (i % 2) c.abort();
  }
  ASSERT_TRUE(wait_no_channels(5000));
  EXPECT_EQ(printed(), 0u);
  std::vector<std::string> r = session(kTransaction, 6);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[4], "250 OK");
  EXPECT_EQ(printed(), 1u);
}

}  // namespace
