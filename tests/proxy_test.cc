// PureProxy (include/smtpd/proxy.h): the envelope and message as the
// upstream receives them, byte for byte, and what the client is told when
// the upstream accepts, refuses, stalls, resets or is not there. The proxy
// runs in-process on the test's reactor; the upstream is a recorder
// thread (upstream_recorder.h). The last test runs the real binary
// against Postfix's smtp-sink.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtpd/proxy.h"
#include "upstream_recorder.h"

namespace {

using relaytest::Clock;
using relaytest::ms_since;
using relaytest::pump_until;
using relaytest::SmtpTestClient;
using relaytest::UpstreamRecorder;
using relaytest::UpstreamSession;
using smtpd::PureProxy;
using smtpd::asyncore::socket_map;

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

class ProxyTest : public ::testing::Test {
 protected:
  // Starts the recorder, then the proxy relaying to it.
  void start(int up_family = AF_INET, bool up_listens = true,
             const std::string& up_host = "") {
    up.reset(new UpstreamRecorder(up_family, up_listens));
    ASSERT_GT(up->port(), 0);
    std::string host = !up_host.empty() ? up_host
                       : up_family == AF_INET6 ? "::1" : "127.0.0.1";
    serve({host, up->port()});
  }
  void serve(const smtpd::HostPort& remote, const std::string& local = "127.0.0.1") {
    proxy.reset(new PureProxy({local, 0}, remote, opts, &map));
  }
  int port() { return proxy->bound_port(); }

  // The client's greeting, then EHLO.
  std::unique_ptr<SmtpTestClient> client(int family = AF_INET) {
    std::unique_ptr<SmtpTestClient> c(new SmtpTestClient(map, port(), family));
    EXPECT_TRUE(c->ok());
    EXPECT_TRUE(starts_with(c->greeting, "220 ")) << c->greeting;
    EXPECT_TRUE(starts_with(c->cmd("EHLO client.example"), "250 "));
    return c;
  }

  bool upstream_ended(size_t n) {
    return pump_until(map, [&] { return up->ended() >= n; });
  }

  std::string ehlo() { return "EHLO " + proxy->fqdn(); }

  socket_map map;
  smtpd::ServerOptions opts;
  std::unique_ptr<UpstreamRecorder> up;
  std::unique_ptr<PureProxy> proxy;
};

// ------------------------------------------------------------------ text

TEST(ProxyText, XPeerGoesWhereTheReferencePutsIt) {
  const std::string h = "X-Peer: 10.0.0.1";
  EXPECT_EQ(h + "\n", PureProxy::add_x_peer("", "10.0.0.1"));
  EXPECT_EQ("a\n" + h, PureProxy::add_x_peer("a", "10.0.0.1"));
  EXPECT_EQ("a\n" + h + "\n", PureProxy::add_x_peer("a\n", "10.0.0.1"));
  EXPECT_EQ("a\n" + h + "\n\nb", PureProxy::add_x_peer("a\n\nb", "10.0.0.1"));
  EXPECT_EQ(h + "\n\nb", PureProxy::add_x_peer("\nb", "10.0.0.1"));
  EXPECT_EQ("a\nb\n" + h + "\n\nc\n\nd",
            PureProxy::add_x_peer("a\nb\n\nc\n\nd", "10.0.0.1"));
}

TEST(ProxyText, WireFormatEndsLinesStuffsDotsAndTerminates) {
  EXPECT_EQ("a\r\nb\r\nc\r\n..d\r\n.\r\n", PureProxy::wire_format("a\rb\r\nc\n.d"));
  EXPECT_EQ("\r\n.\r\n", PureProxy::wire_format(""));
  // A trailing LF is a last, empty line: it is kept (smtplib dropped it).
  EXPECT_EQ("x\r\n\r\n.\r\n", PureProxy::wire_format("x\n"));
  EXPECT_EQ("..\r\n...\r\n\r\n\r\n.\r\n", PureProxy::wire_format(".\n..\n\n"));
}

// ------------------------------------------------------------------ relaying

TEST_F(ProxyTest, RelaysEnvelopeAndBodyByteForByte) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("354 End data with <CR><LF>.<CR><LF>", c->cmd("DATA"));
  ASSERT_TRUE(c->send("Subject: dots\r\n\r\n..leading dot\r\n..\r\n...\r\nend\r\n.\r\n"));
  EXPECT_EQ("250 OK", c->reply());
  ASSERT_TRUE(upstream_ended(1));
  std::vector<UpstreamSession> s = up->sessions();
  ASSERT_EQ(1u, s.size());
  std::vector<std::string> want = {ehlo(), "MAIL FROM:<eggs@example>",
                                   "RCPT TO:<spam@example>", "DATA", "QUIT"};
  EXPECT_EQ(want, s[0].commands);
  ASSERT_EQ(1u, s[0].bodies.size());
  EXPECT_EQ("Subject: dots\r\nX-Peer: 127.0.0.1\r\n\r\n..leading dot\r\n..\r\n"
            "...\r\nend\r\n.\r\n",
            s[0].bodies[0]);
}

TEST_F(ProxyTest, XPeerAfterLastHeaderWhenThereIsNoEmptyLine) {
  start();
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  ASSERT_TRUE(c->send("A: 1\r\nB: 2\r\n.\r\n"));
  EXPECT_EQ("250 OK", c->reply());
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("A: 1\r\nB: 2\r\nX-Peer: 127.0.0.1\r\n.\r\n", up->sessions()[0].bodies[0]);
}

TEST_F(ProxyTest, EmptyMessageCarriesOnlyXPeer) {
  start();
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  EXPECT_EQ("250 OK", c->cmd("."));
  ASSERT_TRUE(upstream_ended(1));
  // The header and the empty line that ends the headers.
  EXPECT_EQ("X-Peer: 127.0.0.1\r\n\r\n.\r\n", up->sessions()[0].bodies[0]);
}

TEST_F(ProxyTest, HeloClientAndNullSender) {
  start();
  SmtpTestClient c(map, port());
  EXPECT_TRUE(starts_with(c.cmd("HELO client.example"), "250 "));
  EXPECT_EQ("250 OK", c.cmd("MAIL FROM:<>"));
  EXPECT_EQ("250 OK", c.cmd("RCPT TO:<spam@example>"));
  c.cmd("DATA");
  EXPECT_EQ("250 OK", c.cmd("."));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("MAIL FROM:<>", up->sessions()[0].commands[1]);
}

TEST_F(ProxyTest, EachMessageHasItsOwnUpstreamSession) {
  start();
  auto c = client();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
    EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
    c->cmd("DATA");
    EXPECT_EQ("250 OK", c->cmd("message " + std::to_string(i) + "\r\n."));
  }
  ASSERT_TRUE(upstream_ended(2));
  std::vector<UpstreamSession> s = up->sessions();
  ASSERT_EQ(2u, s.size());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ("QUIT", s[i].commands.back());
    ASSERT_EQ(1u, s[i].bodies.size());
    EXPECT_EQ("message " + std::to_string(i) + "\r\nX-Peer: 127.0.0.1\r\n.\r\n",
              s[i].bodies[0]);
  }
}

TEST_F(ProxyTest, SizeAndBodyArePassedWhenTheUpstreamOffersThem) {
  start();
  up->offer_size();
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example> body=8bitmime SIZE=1234"));
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("MAIL FROM:<eggs@example> SIZE=1234 BODY=8BITMIME",
            up->sessions()[0].commands[1]);
}

TEST_F(ProxyTest, SizeIsNotPassedWhenTheUpstreamDoesNotOfferIt) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example> size=1234"));
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("MAIL FROM:<eggs@example>", up->sessions()[0].commands[1]);
}

TEST_F(ProxyTest, EhloRefusedFallsBackToHelo) {
  start();
  up->on("ehlo", "502 5.5.1 no EHLO here");
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example> SIZE=9 BODY=8BITMIME"));
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  std::vector<std::string> want = {ehlo(), "HELO " + proxy->fqdn(),
                                   "MAIL FROM:<eggs@example>", "QUIT"};
  EXPECT_EQ(want, up->sessions()[0].commands);
}

TEST_F(ProxyTest, UpstreamOnIpv6) {
  up.reset(new UpstreamRecorder(AF_INET6));
  if (up->port() <= 0) GTEST_SKIP() << "no IPv6 loopback here";
  serve({"::1", up->port()});
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
  c->cmd("DATA");
  EXPECT_EQ("250 OK", c->cmd("hi\r\n."));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("hi\r\nX-Peer: 127.0.0.1\r\n.\r\n", up->sessions()[0].bodies[0]);
}

TEST_F(ProxyTest, Ipv6ClientIsNamedInXPeer) {
  up.reset(new UpstreamRecorder(AF_INET));
  int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_storage ss;
  socklen_t len = relaytest::loopback(AF_INET6, 0, &ss);
  bool v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  if (probe >= 0) ::close(probe);
  if (!v6) GTEST_SKIP() << "no IPv6 loopback here";
  serve({"127.0.0.1", up->port()}, "::1");
  auto c = client(AF_INET6);
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  EXPECT_EQ("250 OK", c->cmd("hi\r\n."));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("hi\r\nX-Peer: ::1\r\n.\r\n", up->sessions()[0].bodies[0]);
}

// "localhost" may name ::1 first; the relay then tries 127.0.0.1 next.
TEST_F(ProxyTest, HostNameTriesEachAddress) {
  start(AF_INET, true, "localhost");
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("MAIL FROM:<eggs@example>", up->sessions()[0].commands[1]);
}

// ------------------------------------------------------------------ refusals

TEST_F(ProxyTest, RefusedRecipientGetsTheUpstreamReply) {
  start();
  up->on("rcpt", "550 5.1.1 No such user here", "<ham@example>");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("550 5.1.1 No such user here", c->cmd("RCPT TO:<ham@example>"));
  c->cmd("DATA");
  EXPECT_EQ("250 OK", c->cmd("body\r\n."));
  ASSERT_TRUE(upstream_ended(1));
  std::vector<std::string> want = {ehlo(), "MAIL FROM:<eggs@example>",
                                   "RCPT TO:<spam@example>",
                                   "RCPT TO:<ham@example>", "DATA", "QUIT"};
  EXPECT_EQ(want, up->sessions()[0].commands);
}

TEST_F(ProxyTest, AllRecipientsRefusedMeansNoData) {
  start();
  up->on("rcpt", "550 5.1.1 No such user here");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ("550 5.1.1 No such user here", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("503 Error: need RCPT command", c->cmd("DATA"));
  EXPECT_EQ("221 Bye", c->cmd("QUIT"));
  ASSERT_TRUE(upstream_ended(1));
  std::vector<UpstreamSession> s = up->sessions();
  for (const std::string& cmd : s[0].commands) EXPECT_NE("DATA", cmd);
}

TEST_F(ProxyTest, MultiLineRefusalPassesItsLastLine) {
  start();
  up->on("rcpt", "550-5.1.1 first line\r\n550 5.1.1 second line");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ("550 5.1.1 second line", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ(1u, c->last.size());
}

TEST_F(ProxyTest, RefusedSenderEndsTheSessionAndTheNextMailRetries) {
  start();
  up->on("mail", "550 5.7.1 sender blocked", "<bad@example>");
  auto c = client();
  EXPECT_EQ("550 5.7.1 sender blocked", c->cmd("MAIL FROM:<bad@example>"));
  EXPECT_EQ("503 Error: need MAIL command", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<good@example>"));
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
  ASSERT_TRUE(upstream_ended(1));
  std::vector<UpstreamSession> s = up->sessions();
  ASSERT_EQ(2u, s.size());
  EXPECT_EQ("QUIT", s[0].commands.back());
  EXPECT_EQ("MAIL FROM:<good@example>", s[1].commands[1]);
}

TEST_F(ProxyTest, RefusedGreetingIsPassedOn) {
  start();
  up->on("greeting", "554 5.3.2 not now, not ever");
  auto c = client();
  EXPECT_EQ("554 5.3.2 not now, not ever", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", c->cmd("NOOP"));
}

TEST_F(ProxyTest, RefusedDataIsPassedOnAndTheTransactionGoesOn) {
  start();
  up->on("data", "554 5.5.0 no data today");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  EXPECT_EQ("554 5.5.0 no data today", c->cmd("DATA"));
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("QUIT", up->sessions()[0].commands.back());
}

TEST_F(ProxyTest, RefusedMessageIsPassedOn) {
  start();
  up->on("message", "451 4.3.0 try again later");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  EXPECT_EQ("451 4.3.0 try again later", c->cmd("hello\r\n."));
  EXPECT_EQ("503 Error: need RCPT command", c->cmd("DATA"));
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("hello\r\nX-Peer: 127.0.0.1\r\n.\r\n", up->sessions()[0].bodies[0]);
}

TEST_F(ProxyTest, Upstream421Becomes451AndLosesTheTransaction) {
  start();
  up->on("rcpt", "421 4.3.2 shutting down", "<ham@example>");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("451 4.3.2 shutting down", c->cmd("RCPT TO:<ham@example>"));
  // spam@ was accepted, but the upstream is gone: never 354 or 250 now.
  std::string r = c->cmd("RCPT TO:<eggs2@example>");
  EXPECT_TRUE(starts_with(r, "451 ")) << r;
  r = c->cmd("DATA");
  EXPECT_TRUE(starts_with(r, "451 ")) << r;
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ(2u, up->connections());
}

// ------------------------------------------------------------------ failures

TEST_F(ProxyTest, UnreachableUpstreamIs451AndTheSessionGoesOn) {
  start(AF_INET, false);
  auto c = client();
  std::string r = c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_TRUE(starts_with(r, "451 4.4.1 ")) << r;
  EXPECT_EQ("503 Error: need MAIL command", c->cmd("RCPT TO:<spam@example>"));
  EXPECT_EQ("250 OK", c->cmd("NOOP"));
}

// A listener whose backlog is full drops new SYNs, so a connect hangs:
// the relay must give up after relay_connect_timeout.
TEST_F(ProxyTest, HangingConnectTimesOutWith451) {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_storage ss;
  socklen_t len = relaytest::loopback(AF_INET, 0, &ss);
  ASSERT_EQ(0, ::bind(l, reinterpret_cast<sockaddr*>(&ss), len));
  ASSERT_EQ(0, ::listen(l, 0));
  len = sizeof ss;
  getsockname(l, reinterpret_cast<sockaddr*>(&ss), &len);
  int lport = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(f, reinterpret_cast<sockaddr*>(&ss), len);
    fillers.push_back(f);
  }
  // Is it really full? A probe must not get through within 200 ms.
  int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ::connect(probe, reinterpret_cast<sockaddr*>(&ss), len);
  pollfd p{probe, POLLOUT, 0};
  bool full = ::poll(&p, 1, 200) == 0;
  ::close(probe);
  if (full) {
    opts.relay_connect_timeout = 0.3;
    serve({"127.0.0.1", lport});
    auto c = client();
    std::string r = c->cmd("MAIL FROM:<eggs@example>");
    EXPECT_TRUE(starts_with(r, "451 4.4.1 ")) << r;
    EXPECT_NE(std::string::npos, r.find("timed out")) << r;
  }
  for (int f : fillers) ::close(f);
  ::close(l);
  if (!full) GTEST_SKIP() << "this kernel does not let a backlog fill up";
}

TEST_F(ProxyTest, StalledGreetingTimesOutWith451) {
  opts.relay_timeout = 0.3;
  start();
  up->stall("greeting");
  auto c = client();
  std::string r = c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_TRUE(starts_with(r, "451 4.4.2 ")) << r;
}

TEST_F(ProxyTest, StalledRecipientTimesOutWith451) {
  opts.relay_timeout = 0.3;
  start();
  up->stall("rcpt");
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  std::string r = c->cmd("RCPT TO:<spam@example>");
  EXPECT_TRUE(starts_with(r, "451 4.4.2 ")) << r;
  EXPECT_EQ("503 Error: need RCPT command", c->cmd("DATA"));
}

TEST_F(ProxyTest, StalledFinalReplyTimesOutWith451) {
  opts.relay_timeout = 0.3;
  start();
  up->stall("message");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  std::string r = c->cmd("body\r\n.");
  EXPECT_TRUE(starts_with(r, "451 4.4.2 ")) << r;
}

TEST_F(ProxyTest, ResetAtRecipientIs451) {
  start();
  up->reset("rcpt");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  std::string r = c->cmd("RCPT TO:<spam@example>");
  EXPECT_TRUE(starts_with(r, "451 ")) << r;
}

TEST_F(ProxyTest, ResetAfterTheMessageIs451NotOk) {
  start();
  up->reset("message");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->cmd("DATA");
  std::string r = c->cmd("body\r\n.");
  EXPECT_TRUE(starts_with(r, "451 ")) << r;
  EXPECT_EQ("body\r\nX-Peer: 127.0.0.1\r\n.\r\n", up->sessions()[0].bodies[0]);
}

TEST_F(ProxyTest, Upstream421AtMailIs451) {
  start();
  up->on("mail", "421 4.4.2 bye");
  auto c = client();
  std::string r = c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ("451 4.4.2 bye", r);
  EXPECT_EQ("250 OK", c->cmd("NOOP"));
}

TEST_F(ProxyTest, MalformedReplyIs451) {
  start();
  up->on("mail", "hello there");
  auto c = client();
  std::string r = c->cmd("MAIL FROM:<eggs@example>");
  EXPECT_TRUE(starts_with(r, "451 4.5.0 ")) << r;
}

// A 3xx to RCPT must not reach the channel, which would take it as a yes.
TEST_F(ProxyTest, SuccessCodeOutOfTurnIs451) {
  start();
  up->on("rcpt", "354 go on then");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  std::string r = c->cmd("RCPT TO:<spam@example>");
  EXPECT_TRUE(starts_with(r, "451 4.5.0 ")) << r;
  EXPECT_EQ("503 Error: need RCPT command", c->cmd("DATA"));
}

TEST_F(ProxyTest, AddressWithLineBreakIsRefusedNotRelayed) {
  start();
  auto c = client();
  EXPECT_EQ("501 5.1.7 Bad sender address syntax",
            c->cmd("MAIL FROM:<a\nRSET@example>"));
  EXPECT_EQ(0u, up->connections());
}

// ------------------------------------------------------------------ endings

TEST_F(ProxyTest, RsetEndsTheUpstreamSessionWithQuit) {
  start();
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  EXPECT_EQ("250 OK", c->cmd("RSET"));
  ASSERT_TRUE(upstream_ended(1));
  std::vector<std::string> want = {ehlo(), "MAIL FROM:<eggs@example>",
                                   "RCPT TO:<spam@example>", "QUIT"};
  EXPECT_EQ(want, up->sessions()[0].commands);
}

TEST_F(ProxyTest, ClientDisconnectEndsTheUpstreamSessionWithQuit) {
  start();
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  c->close();
  ASSERT_TRUE(upstream_ended(1));
  EXPECT_EQ("QUIT", up->sessions()[0].commands.back());
  EXPECT_TRUE(up->sessions()[0].bodies.empty());
}

// A QUIT after 354 would become message text; the relay hangs up instead,
// so the upstream never sees a complete message.
TEST_F(ProxyTest, OversizedMessageAbandonsUpstreamDataWithoutQuit) {
  opts.data_size_limit = 64;
  start();
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<spam@example>");
  EXPECT_EQ("354 End data with <CR><LF>.<CR><LF>", c->cmd("DATA"));
  EXPECT_EQ("552 Error: Too much mail data",
            c->cmd(std::string(200, 'x') + "\r\n."));
  ASSERT_TRUE(upstream_ended(1));
  UpstreamSession s = up->sessions()[0];
  EXPECT_EQ("DATA", s.commands.back());
  ASSERT_EQ(1u, s.bodies.size());
  EXPECT_EQ("", s.bodies[0]);
  EXPECT_EQ("250 OK", c->cmd("NOOP"));
}

// A channel awaiting its upstream reads nothing, so it sees the hang-up
// only once the relay step ends, here by the (short) relay timeout.
TEST_F(ProxyTest, ClientGoneWhileUpstreamStallsLeavesTheServerWorking) {
  opts.relay_timeout = 0.3;
  start();
  up->stall("rcpt", "<slow@example>");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  ASSERT_TRUE(c->send("RCPT TO:<slow@example>\r\n"));
  ASSERT_TRUE(pump_until(map, [&] {
    auto s = up->sessions();
    return !s.empty() && s[0].commands.size() == 3;
  }));
  c->close();
  ASSERT_TRUE(pump_until(map, [&] { return proxy->channel_count == 0; }));
  auto d = client();
  EXPECT_EQ("250 OK", d->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", d->cmd("RCPT TO:<spam@example>"));
}

// The one timing check: a transaction must not wait for another client's
// stalled upstream. The bound is generous; a blocking relay would take
// the whole relay_timeout (30 s).
TEST_F(ProxyTest, StalledUpstreamDoesNotDelayAnotherClient) {
  start();
  up->stall("mail", "<slow@example>");
  auto slow = client();
  ASSERT_TRUE(slow->send("MAIL FROM:<slow@example>\r\n"));
  ASSERT_TRUE(pump_until(map, [&] {
    auto s = up->sessions();
    return !s.empty() && s[0].commands.size() == 2;
  }));

  Clock::time_point t0 = Clock::now();
  auto fast = client();
  EXPECT_EQ("250 OK", fast->cmd("MAIL FROM:<fast@example>"));
  EXPECT_EQ("250 OK", fast->cmd("RCPT TO:<spam@example>"));
  fast->cmd("DATA");
  EXPECT_EQ("250 OK", fast->cmd("quick\r\n."));
  EXPECT_EQ("221 Bye", fast->cmd("QUIT"));
  long took = ms_since(t0);
  EXPECT_LT(took, 5000) << "the second client waited " << took << " ms";
  EXPECT_EQ("TIMEOUT", slow->reply(50));  // still waiting on its upstream
}

// ------------------------------------------------------------------ the real binary

std::string smtpd_bin() {
  const char* b = getenv("SMTPD_BIN");
  return b && *b ? b : "build/smtpd";
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_storage ss;
  socklen_t len = relaytest::loopback(AF_INET, 0, &ss);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  ::close(fd);
  return port;
}

pid_t spawn(const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

// Waits for a listener on the port (bounded), by connecting.
bool listening(int port) {
  Clock::time_point t0 = Clock::now();
  while (ms_since(t0) < 5000) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_storage ss;
    socklen_t len = relaytest::loopback(AF_INET, port, &ss);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
    ::close(fd);
    if (ok) return true;
    usleep(20000);
  }
  return false;
}

void stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

std::string run_smtplib(const std::string& script, int port) {
  std::string cmd = "python3 " + script + " " + std::to_string(port) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "popen failed";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  return out;
}

std::string read_dir_files(const std::string& dir) {
  std::string all;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(dir + "/" + e->d_name, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      all += ss.str();
    }
    closedir(d);
  }
  return all;
}

TEST(ProxyWire, RelaysToSmtpSinkAndAnswers4xxOnceItIsGone) {
  const char kSink[] = "/usr/sbin/smtp-sink";
  if (access(kSink, X_OK) != 0) GTEST_SKIP() << "smtp-sink is not installed";
  if (system("python3 -c 'import smtplib' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 is not available";
  ASSERT_EQ(0, access(smtpd_bin().c_str(), X_OK)) << smtpd_bin();

  char tmpl[] = "/tmp/smtpd-wire-XXXXXX";
  ASSERT_NE(nullptr, mkdtemp(tmpl));
  std::string dir = tmpl, dumps = dir + "/dumps", script = dir + "/send.py";
  ASSERT_EQ(0, mkdir(dumps.c_str(), 0777));
  // smtp-sink writes as nobody when run as root.
  chmod(dir.c_str(), 0755);
  chmod(dumps.c_str(), 0777);
  {
    std::ofstream f(script);
    f << "import smtplib, sys\n"
         "try:\n"
         "    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)\n"
         "    r = s.sendmail('eggs@example', ['spam@example'],\n"
         "                   'Subject: wire test\\r\\n\\r\\nover the wire\\r\\n')\n"
         "    print('SENT', r)\n"
         "    s.quit()\n"
         "except smtplib.SMTPResponseException as e:\n"
         "    print('REFUSED', e.smtp_code)\n";
  }

  int sink_port = free_port(), port = free_port();
  std::vector<std::string> sink = {kSink};
  if (geteuid() == 0) sink.insert(sink.end(), {"-u", "nobody"});
  sink.insert(sink.end(), {"-d", dumps + "/%M.", "127.0.0.1:" + std::to_string(sink_port), "10"});
  pid_t sink_pid = spawn(sink);
  ASSERT_TRUE(listening(sink_port));
  pid_t smtpd_pid = spawn({smtpd_bin(), "-n", "127.0.0.1:" + std::to_string(port),
                           "127.0.0.1:" + std::to_string(sink_port)});
  EXPECT_TRUE(listening(port));

  EXPECT_EQ("SENT {}\n", run_smtplib(script, port));
  std::string dumped = read_dir_files(dumps);
  EXPECT_NE(std::string::npos, dumped.find("X-Peer: 127.0.0.1\n")) << dumped;
  EXPECT_NE(std::string::npos, dumped.find("Subject: wire test\n")) << dumped;
  EXPECT_NE(std::string::npos, dumped.find("over the wire\n")) << dumped;

  stop(sink_pid);
  std::string out = run_smtplib(script, port);
  EXPECT_TRUE(starts_with(out, "REFUSED 4")) << out;

  stop(smtpd_pid);
  std::string rm = "rm -rf " + dir;
  EXPECT_EQ(0, system(rm.c_str()));
}

}  // namespace
