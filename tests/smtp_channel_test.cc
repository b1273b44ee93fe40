// SMTPChannel reply bytes, command by command, in the spirit of the
// reference's test_smtpd.py: each session is a channel over socketpair(2)
// driven by its own socket_map; the test plays the client on the other end.
// The server is a small SMTPServer that records process_message() calls.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtpd/smtpd.h"
#include "test_util.h"

namespace {

using smtpd::SMTPChannel;
using smtpd::ServerOptions;
using smtpd::asyncore::socket_map;
using testutil::Deadline;

constexpr int kPeerPort = 4242;

// What process_message() was given, for one message.
struct Message {
  smtpd::Peer peer;
  std::string mailfrom;
  std::vector<std::string> rcpttos;
  std::string data;
  std::vector<std::string> mail_options;
  std::vector<std::string> rcpt_options;
};

class RecordingServer : public smtpd::SMTPServer {
 public:
  RecordingServer(const ServerOptions& o, socket_map* map)
      : SMTPServer({"127.0.0.1", 0}, {"b", 0}, o, map) {}

  std::optional<std::string> process_message(
      const smtpd::Peer& peer, const std::string& mailfrom,
      const std::vector<std::string>& rcpttos, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options) override {
    messages.push_back({peer, mailfrom, rcpttos, data, mail_options, rcpt_options});
    return status;
  }

  std::vector<Message> messages;
  std::optional<std::string> status;  // what process_message answers
};

// One client connection: a channel on one end of a socketpair, the test on
// the other. All waits run the map's passes and are bounded.
class Conn {
 public:
  Conn(smtpd::SMTPServer& server, socket_map& map, int type = SOCK_STREAM)
      : map_(map) {
    int sv[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return;
    peer_ = sv[1];
    sockaddr_storage ss{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(kPeerPort);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    channel = map.adopt(std::unique_ptr<SMTPChannel>(
        new SMTPChannel(server, sv[0], ss, sizeof(sockaddr_in), &map)));
  }
  ~Conn() {
    if (peer_ >= 0) ::close(peer_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  int peer() const { return peer_; }

  // Writes all of `s`, running passes whenever the socket is full.
  bool write(const std::string& s) {
    Deadline d(10000);
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(peer_, s.data() + off, s.size() - off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN) {
        return false;
      } else {
        if (d.expired()) return false;
        map_.poll_once(10);
        take();
      }
    }
    return true;
  }

  // Runs passes until the channel has read everything written so far.
  bool drain() {
    Deadline d(3000);
    for (;;) {
      int queued = 0;
      if (::ioctl(peer_, SIOCOUTQ, &queued) != 0) return false;
      if (queued == 0) return true;
      if (d.expired()) return false;
      map_.poll_once(10);
      take();
    }
  }

  // The next whole reply (CRLFs kept); empty on timeout or close.
  std::string reply(int ms = 3000) {
    Deadline d(ms);
    size_t len;
    take();
    while (!testutil::complete_reply(in_, &len)) {
      if (eof_ || d.expired()) return std::string();
      map_.poll_once(10);
      take();
    }
    std::string r = in_.substr(0, len);
    in_.erase(0, len);
    return r;
  }

  std::string cmd(const std::string& line) {
    if (!write(line + "\r\n")) return std::string();
    return reply();
  }

  // Runs passes until the channel's end closes; *rest gets unread output.
  bool closed(int ms = 3000, std::string* rest = nullptr) {
    Deadline d(ms);
    take();
    while (!eof_ && !d.expired()) {
      map_.poll_once(10);
      take();
    }
    if (rest) *rest = in_;
    return eof_;
  }

  // Reads whatever has arrived, without waiting.
  void take() {
    char buf[65536];
    for (int i = 0; i < 1000 && !eof_; ++i) {
      ssize_t n = ::recv(peer_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
      } else {
        if (n == 0 || errno == ECONNRESET) eof_ = true;
        break;
      }
    }
  }

  // Valid only while the session is open.
  SMTPChannel* channel = nullptr;

 private:
  socket_map& map_;
  int peer_ = -1;
  std::string in_;
  bool eof_ = false;
};

class ChannelTest : public ::testing::Test {
 protected:
  // Creates the server; call before connect() to change the options.
  void start(const ServerOptions& o = ServerOptions()) {
    server_.reset(new RecordingServer(o, &map_));
    fqdn = server_->fqdn();
  }

  RecordingServer& server() {
    if (!server_) start();
    return *server_;
  }

  // A new session, with its greeting already read.
  Conn& connect(int type = SOCK_STREAM) {
    conns_.emplace_back(new Conn(server(), map_, type));
    Conn& c = *conns_.back();
    EXPECT_NE(c.channel, nullptr);
    greeting = c.reply();
    return c;
  }

  // The EHLO reply for the given extensions, as the reference sends it.
  std::string ehlo_reply(size_t size, bool utf8) const {
    std::string r = "250-" + fqdn + "\r\n";
    if (size) r += "250-SIZE " + std::to_string(size) + "\r\n";
    r += "250-8BITMIME\r\n";
    if (utf8) r += "250-SMTPUTF8\r\n";
    return r + "250 HELP\r\n";
  }

  // HELO/EHLO, MAIL, one RCPT, DATA: ready for the message text.
  void to_data(Conn& c, const std::string& hello = "HELO example") {
    ASSERT_EQ(c.cmd(hello).substr(0, 3), "250");
    ASSERT_EQ(c.cmd("MAIL FROM:<eggs@example>"), "250 OK\r\n");
    ASSERT_EQ(c.cmd("RCPT TO:<spam@example>"), "250 OK\r\n");
    ASSERT_EQ(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  }

  socket_map map_;
  std::unique_ptr<RecordingServer> server_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::string fqdn;
  std::string greeting;
};

const char kOK[] = "250 OK\r\n";
const char kSendHelo[] = "503 Error: send HELO first\r\n";
const char kMailSyntax[] = "501 Syntax: MAIL FROM: <address>\r\n";
const char kMailSyntaxExt[] =
    "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n";
const char kRcptSyntax[] = "501 Syntax: RCPT TO: <address>\r\n";
const char kRcptSyntaxExt[] =
    "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n";
const char kTooLong[] = "500 Error: line too long\r\n";
const char kCommands[] =
    "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n";
const char kStartData[] = "354 End data with <CR><LF>.<CR><LF>\r\n";

// ------------------------------------------------------------------ greeting

TEST_F(ChannelTest, GreetsWith220FqdnAndVersion) {
  connect();
  EXPECT_EQ(greeting, "220 " + fqdn + " " + smtpd::__version__ + "\r\n");
}

TEST_F(ChannelTest, HeloAnswersWithFqdn) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELO example"), "250 " + fqdn + "\r\n");
}

TEST_F(ChannelTest, HeloWithoutHostnameIs501) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELO"), "501 Syntax: HELO hostname\r\n");
  EXPECT_EQ(c.cmd("HELO "), "501 Syntax: HELO hostname\r\n");
}

TEST_F(ChannelTest, EhloListsSizeEightBitMimeAndHelp) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("EHLO example"), ehlo_reply(smtpd::DATA_SIZE_DEFAULT, false));
}

TEST_F(ChannelTest, EhloOmitsSizeWhenThereIsNoLimit) {
  ServerOptions o;
  o.data_size_limit = 0;
  start(o);
  Conn& c = connect();
  EXPECT_EQ(c.cmd("EHLO example"), ehlo_reply(0, false));
}

TEST_F(ChannelTest, EhloListsSmtputf8AfterEightBitMimeWhenEnabled) {
  ServerOptions o;
  o.data_size_limit = 4096;
  o.enable_SMTPUTF8 = true;
  start(o);
  Conn& c = connect();
  EXPECT_EQ(c.cmd("EHLO example"), ehlo_reply(4096, true));
}

TEST_F(ChannelTest, EhloWithoutHostnameIs501) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("EHLO"), "501 Syntax: EHLO hostname\r\n");
}

TEST_F(ChannelTest, SecondHeloOrEhloIs503) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("HELO example"), "503 Duplicate HELO/EHLO\r\n");
  EXPECT_EQ(c.cmd("EHLO example"), "503 Duplicate HELO/EHLO\r\n");
  Conn& e = connect();
  e.cmd("EHLO example");
  EXPECT_EQ(e.cmd("EHLO example"), "503 Duplicate HELO/EHLO\r\n");
  EXPECT_EQ(e.cmd("HELO example"), "503 Duplicate HELO/EHLO\r\n");
}

TEST_F(ChannelTest, MultiLineEhloReplyIsOneSend) {
  // SOCK_SEQPACKET keeps send boundaries, so one recv returns one send.
  Conn& c = connect(SOCK_SEQPACKET);
  ASSERT_TRUE(c.write("EHLO example\r\n"));
  Deadline d(3000);
  pollfd p{c.peer(), POLLIN, 0};
  while (::poll(&p, 1, 0) == 0 && !d.expired()) map_.poll_once(10);
  char buf[4096];
  ssize_t n = ::recv(c.peer(), buf, sizeof buf, MSG_DONTWAIT);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
            ehlo_reply(smtpd::DATA_SIZE_DEFAULT, false));
}

TEST_F(ChannelTest, CommandsAreCaseInsensitive) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("eHlO example").substr(0, 4), "250-");
  EXPECT_EQ(c.cmd("mAiL fRoM:<eggs@example>"), kOK);
  EXPECT_EQ(c.cmd("rcpt to:<spam@example>"), kOK);
  EXPECT_EQ(c.cmd("data"), kStartData);
  EXPECT_EQ(c.cmd("body\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "body");
}

// ------------------------------------------------------------------ NOOP, QUIT

TEST_F(ChannelTest, NoopIs250BeforeAndAfterHelo) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("NOOP"), kOK);
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, NoopWithArgumentIs501) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("NOOP hi"), "501 Syntax: NOOP\r\n");
}

TEST_F(ChannelTest, QuitAnswers221AndCloses) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("QUIT"), "221 Bye\r\n");
  EXPECT_TRUE(c.closed());
}

TEST_F(ChannelTest, QuitIgnoresArguments) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("QUIT bye bye"), "221 Bye\r\n");
  EXPECT_TRUE(c.closed());
}

TEST_F(ChannelTest, CommandsPipelinedAfterQuitGetNoReply) {
  Conn& c = connect();
  c.cmd("HELO example");
  ASSERT_TRUE(c.write("QUIT\r\nNOOP\r\nNOOP\r\n"));
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, "221 Bye\r\n");
}

// ------------------------------------------------------------------ HELP, VRFY, EXPN

TEST_F(ChannelTest, HelpListsSupportedCommands) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELP"), std::string("250 ") + kCommands);
}

TEST_F(ChannelTest, HelpTopicsAfterHelo) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("HELP EHLO"), "250 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(c.cmd("HELP HELO"), "250 Syntax: HELO hostname\r\n");
  EXPECT_EQ(c.cmd("HELP MAIL"), "250 Syntax: MAIL FROM: <address>\r\n");
  EXPECT_EQ(c.cmd("HELP RCPT"), "250 Syntax: RCPT TO: <address>\r\n");
  EXPECT_EQ(c.cmd("HELP DATA"), "250 Syntax: DATA\r\n");
  EXPECT_EQ(c.cmd("HELP RSET"), "250 Syntax: RSET\r\n");
  EXPECT_EQ(c.cmd("HELP NOOP"), "250 Syntax: NOOP\r\n");
  EXPECT_EQ(c.cmd("HELP QUIT"), "250 Syntax: QUIT\r\n");
  EXPECT_EQ(c.cmd("HELP VRFY"), "250 Syntax: VRFY <address>\r\n");
}

TEST_F(ChannelTest, HelpTopicsBeforeHeloHaveNoParameterHint) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELP MAIL"), "250 Syntax: MAIL FROM: <address>\r\n");
  EXPECT_EQ(c.cmd("HELP rcpt"), "250 Syntax: RCPT TO: <address>\r\n");
}

TEST_F(ChannelTest, HelpMailAndRcptAfterEhloMentionParameters) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("HELP MAIL"),
            "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n");
  EXPECT_EQ(c.cmd("help rcpt"),
            "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n");
  EXPECT_EQ(c.cmd("HELP EHLO"), "250 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(c.cmd("HELP VRFY"), "250 Syntax: VRFY <address>\r\n");
}

TEST_F(ChannelTest, HelpUnknownTopicIs501WithCommandList) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELP SPAM"), std::string("501 ") + kCommands);
  EXPECT_EQ(c.cmd("HELP EXPN"), std::string("501 ") + kCommands);
  EXPECT_EQ(c.cmd("HELP HELP"), std::string("501 ") + kCommands);
}

TEST_F(ChannelTest, VrfyAddressIs252EvenBeforeHelo) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("VRFY eggs@example"),
            "252 Cannot VRFY user, but will accept message and attempt delivery\r\n");
  EXPECT_EQ(c.cmd("VRFY <eggs@example>"),
            "252 Cannot VRFY user, but will accept message and attempt delivery\r\n");
}

TEST_F(ChannelTest, VrfyWithoutArgumentIs501) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("VRFY"), "501 Syntax: VRFY <address>\r\n");
}

TEST_F(ChannelTest, VrfyUnparsableAddressIs502) {
  // The reference raises on this input and drops the connection.
  Conn& c = connect();
  EXPECT_EQ(c.cmd("VRFY <spam@>"), "502 Could not VRFY <spam@>\r\n");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, ExpnIs502WithOrWithoutArgument) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("EXPN"), "502 EXPN not implemented\r\n");
  EXPECT_EQ(c.cmd("EXPN list@example"), "502 EXPN not implemented\r\n");
}

// ------------------------------------------------------------------ ordering

TEST_F(ChannelTest, MailRcptDataBeforeHeloAre503) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("MAIL from:<foo@example.com>"), kSendHelo);
  EXPECT_EQ(c.cmd("RCPT to eggs@example"), kSendHelo);
  EXPECT_EQ(c.cmd("DATA spam"), kSendHelo);
}

TEST_F(ChannelTest, RsetKeepsTheGreeting) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("RSET hi"), "501 Syntax: RSET\r\n");
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("RSET"), kOK);
  EXPECT_EQ(c.cmd("HELO example"), "503 Duplicate HELO/EHLO\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example>"), kOK);
}

TEST_F(ChannelTest, RsetDropsTheEnvelope) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From:eggs@example");
  c.cmd("RCPT To:spam@example");
  EXPECT_EQ(c.cmd("RSET"), kOK);
  EXPECT_EQ(c.cmd("RCPT To:ham@example"), "503 Error: need MAIL command\r\n");
  EXPECT_EQ(c.cmd("DATA"), "503 Error: need RCPT command\r\n");
  c.cmd("MAIL From:foo@example");
  c.cmd("RCPT To:eggs@example");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("data\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].mailfrom, "foo@example");
  EXPECT_EQ(server().messages[0].rcpttos, std::vector<std::string>{"eggs@example"});
}

TEST_F(ChannelTest, SessionStateBelongsToOneConnection) {
  Conn& a = connect();
  a.cmd("EHLO a.example");
  a.cmd("MAIL FROM:<a@example>");
  Conn& b = connect();
  EXPECT_EQ(b.cmd("RCPT TO:<spam@example>"), kSendHelo);
  b.cmd("HELO b.example");
  EXPECT_EQ(b.cmd("RCPT TO:<spam@example>"), "503 Error: need MAIL command\r\n");
  EXPECT_EQ(a.cmd("RCPT TO:<spam@example>"), kOK);
}

// ------------------------------------------------------------------ MAIL

TEST_F(ChannelTest, MailSyntaxErrorsAfterHelo) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("MAIL"), kMailSyntax);
  EXPECT_EQ(c.cmd("MAIL "), kMailSyntax);
  EXPECT_EQ(c.cmd("MAIL from:"), kMailSyntax);
  EXPECT_EQ(c.cmd("MAIL from eggs@example"), kMailSyntax);
  EXPECT_EQ(c.cmd("MAIL to:<eggs@example>"), kMailSyntax);
}

TEST_F(ChannelTest, MailSyntaxErrorsAfterEhloMentionParameters) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL from eggs@example"), kMailSyntaxExt);
}

TEST_F(ChannelTest, MailFromKeywordInAnyCaseWithOrWithoutSpaces) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("MAIL from:<eggs@example>"), kOK);
  c.cmd("RSET");
  EXPECT_EQ(c.cmd("MAIL fRoM:   <foo@example.com>"), kOK);
  EXPECT_EQ(c.channel->mailfrom.value_or(""), "foo@example.com");
}

TEST_F(ChannelTest, MailBareAddressIsTheSender) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("MAIL From: eggs@example"), kOK);
  EXPECT_EQ(c.channel->mailfrom.value_or(""), "eggs@example");
}

TEST_F(ChannelTest, MailEmptyChevronsIsTheNullSender) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from:<>"), kOK);
  EXPECT_EQ(c.channel->mailfrom.value_or(""), "<>");
  EXPECT_EQ(c.cmd("MAIL from:<>"), "503 Error: nested MAIL command\r\n");
}

TEST_F(ChannelTest, MailQuotedLocalPart) {
  Conn& c = connect();
  c.cmd("EHLO example");
  for (const char* line : {"MAIL from: <\"Fred Blogs\"@example.com>",
                           "MAIL from: \"Fred Blogs\"@example.com",
                           "MAIL from: <\"Fred Blogs\"@example.com> SIZE=1000",
                           "MAIL from: \"Fred Blogs\"@example.com SIZE=1000"}) {
    EXPECT_EQ(c.cmd(line), kOK) << line;
    EXPECT_EQ(c.channel->mailfrom.value_or(""), "\"Fred Blogs\"@example.com");
    c.cmd("RSET");
  }
}

TEST_F(ChannelTest, NestedMailIs503) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL from:eggs@example");
  EXPECT_EQ(c.cmd("MAIL from:spam@example"), "503 Error: nested MAIL command\r\n");
  EXPECT_EQ(c.channel->mailfrom.value_or(""), "eggs@example");
}

TEST_F(ChannelTest, MailParametersAfterHeloAre501) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("MAIL from:<foo@example.com> SIZE=1234"), kMailSyntax);
}

TEST_F(ChannelTest, MailBodyValues) {
  Conn& c = connect();
  c.cmd("EHLO example");
  for (const char* ok : {"BODY=7BIT", "BODY=8BITMIME", "body=8bitmime"}) {
    EXPECT_EQ(c.cmd(std::string("MAIL FROM:<eggs@example> ") + ok), kOK) << ok;
    c.cmd("RSET");
  }
  for (const char* bad : {"BODY=BINARYMIME", "BODY=UNKNOWN", "BODY"}) {
    EXPECT_EQ(c.cmd(std::string("MAIL FROM:<eggs@example> ") + bad),
              "501 Error: BODY can only be one of 7BIT, 8BITMIME\r\n") << bad;
  }
}

TEST_F(ChannelTest, MailSizeParameter) {
  ServerOptions o;
  o.data_size_limit = 1048;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=invalid"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=-1"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=2096"),
            "552 Error: message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=1049"),
            "552 Error: message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=1048"), kOK);
  c.cmd("RSET");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=512"), kOK);
}

TEST_F(ChannelTest, MailSizeFarAboveTheDefaultLimitIs552) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=99999999999"),
            "552 Error: message size exceeds fixed maximum message size\r\n");
  // Too big for any integer type: still compared by value.
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=123456789012345678901234567890"),
            "552 Error: message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=000000000000000000000033554432"),
            kOK);
}

TEST_F(ChannelTest, MailSizeIsNotCheckedWithoutALimit) {
  ServerOptions o;
  o.data_size_limit = 0;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=99999999999"), kOK);
}

TEST_F(ChannelTest, MailSizeWithoutValueIs501) {
  // The reference crashes here (AttributeError) and drops the client.
  ServerOptions o;
  o.data_size_limit = 1048;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE=10"), kOK);
}

TEST_F(ChannelTest, MailParameterWithEmptyValueOrBadNameIs501) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SIZE="), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> =7BIT"), kMailSyntaxExt);
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> X-Y=1"), kMailSyntaxExt);
}

TEST_F(ChannelTest, MailUnknownParameterIs555) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> ham=green"),
            "555 MAIL FROM parameters not recognized or not implemented\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example>"), kOK);
}

TEST_F(ChannelTest, MailSmtputf8WithoutTheExtensionIs555) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from: <naive@example.com> BODY=8BITMIME SMTPUTF8"),
            "555 MAIL FROM parameters not recognized or not implemented\r\n");
}

TEST_F(ChannelTest, MailParametersAreCheckedInTheReferenceOrder) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from: <foo@example.com> size=20 SMTPUTF8"),
            "555 MAIL FROM parameters not recognized or not implemented\r\n");
  EXPECT_EQ(c.cmd("MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=UNKNOWN"),
            "501 Error: BODY can only be one of 7BIT, 8BITMIME\r\n");
  EXPECT_EQ(c.cmd("MAIL from: <foo@example.com> size=20 body=8bitmime"), kOK);
}

TEST_F(ChannelTest, MailSmtputf8WithTheExtensionIsAccepted) {
  ServerOptions o;
  o.enable_SMTPUTF8 = true;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from: <na\xc3\xafve@example.com> BODY=8BITMIME SMTPUTF8"),
            kOK);
  EXPECT_EQ(c.channel->mailfrom.value_or(""), "na\xc3\xafve@example.com");
  EXPECT_TRUE(c.channel->require_SMTPUTF8);
}

TEST_F(ChannelTest, MailSmtputf8TakesNoValue) {
  ServerOptions o;
  o.enable_SMTPUTF8 = true;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> SMTPUTF8=yes"),
            "501 Error: SMTPUTF8 takes no arguments\r\n");
}

// ------------------------------------------------------------------ RCPT

TEST_F(ChannelTest, RcptNeedsMail) {
  Conn& c = connect();
  c.cmd("HELO example");
  EXPECT_EQ(c.cmd("RCPT to:spam@example"), "503 Error: need MAIL command\r\n");
}

TEST_F(ChannelTest, RcptSyntaxErrorsAfterHelo) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From: eggs@example");
  EXPECT_EQ(c.cmd("RCPT"), kRcptSyntax);
  EXPECT_EQ(c.cmd("RCPT to:"), kRcptSyntax);
  EXPECT_EQ(c.cmd("RCPT to eggs@example"), kRcptSyntax);
  EXPECT_EQ(c.cmd("RCPT TO:<spam@example> FOO=bar"), kRcptSyntax);
}

TEST_F(ChannelTest, RcptSyntaxErrorsAfterEhloMentionParameters) {
  Conn& c = connect();
  c.cmd("EHLO example");
  c.cmd("MAIL From: eggs@example");
  EXPECT_EQ(c.cmd("RCPT"), kRcptSyntaxExt);
  EXPECT_EQ(c.cmd("RCPT to eggs@example"), kRcptSyntaxExt);
}

TEST_F(ChannelTest, RcptLowercaseToWithSpace) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From: eggs@example");
  EXPECT_EQ(c.cmd("RCPT to: <eggs@example>"), kOK);
  EXPECT_EQ(c.channel->rcpttos, std::vector<std::string>{"eggs@example"});
}

TEST_F(ChannelTest, RcptUnparsableAddressIs501) {
  // The reference lets the parser's exception escape and drops the client.
  Conn& c = connect();
  c.cmd("EHLO example");
  c.cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ(c.cmd("RCPT TO:<spam@>"), kRcptSyntaxExt);
  EXPECT_EQ(c.cmd("RCPT TO:<@example>"), kRcptSyntaxExt);
  EXPECT_EQ(c.cmd("RCPT TO:<spam@example>"), kOK);
}

TEST_F(ChannelTest, RcptTrailingGarbage) {
  Conn& c = connect();
  c.cmd("EHLO example");
  c.cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ(c.cmd("RCPT TO:<spam@example>x"),
            "555 RCPT TO parameters not recognized or not implemented\r\n");
  EXPECT_EQ(c.cmd("RCPT TO:<spam@example> <ham@example>"), kRcptSyntaxExt);
  EXPECT_EQ(c.cmd("RCPT TO:Spam <spam@example>"), kRcptSyntaxExt);
  EXPECT_TRUE(c.channel->rcpttos.empty());
}

TEST_F(ChannelTest, RcptUnknownParameterIs555) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from: <foo@example.com> size=20"), kOK);
  EXPECT_EQ(c.cmd("RCPT to: <foo@example.com> foo=bar"),
            "555 RCPT TO parameters not recognized or not implemented\r\n");
}

TEST_F(ChannelTest, MultipleRecipientsReachProcessMessage) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From:eggs@example");
  EXPECT_EQ(c.cmd("RCPT To:spam@example"), kOK);
  EXPECT_EQ(c.cmd("RCPT To:ham@example"), kOK);
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("data\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].rcpttos,
            (std::vector<std::string>{"spam@example", "ham@example"}));
}

TEST_F(ChannelTest, RecipientsPastTheLimitGet452) {
  ServerOptions o;
  o.max_recipients = 2;
  start(o);
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ(c.cmd("RCPT TO:<a@example>"), kOK);
  EXPECT_EQ(c.cmd("RCPT TO:<b@example>"), kOK);
  EXPECT_EQ(c.cmd("RCPT TO:<c@example>"), "452 4.5.3 Error: too many recipients\r\n");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("x\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].rcpttos,
            (std::vector<std::string>{"a@example", "b@example"}));
}

// Two sessions hold messages at once; the one that would pass the
// server-wide budget gets 452 and the other is delivered.
TEST_F(ChannelTest, BufferedBytesPastTheServerBudgetGet452) {
  ServerOptions o;
  o.max_buffered = 100;
  start(o);
  Conn& a = connect();
  Conn& b = connect();
  for (Conn* c : {&a, &b}) {
    c->cmd("HELO example");
    c->cmd("MAIL FROM:<eggs@example>");
    c->cmd("RCPT TO:<spam@example>");
    c->cmd("DATA");
  }
  ASSERT_TRUE(a.write(std::string(60, 'a') + "\r\n"));
  ASSERT_TRUE(a.drain());
  EXPECT_EQ(server().buffered_bytes, 60u);
  EXPECT_EQ(b.cmd(std::string(60, 'b') + "\r\n."),
            "452 Error: insufficient system storage; try later\r\n");
  EXPECT_EQ(a.cmd("."), kOK);
  EXPECT_EQ(server().buffered_bytes, 0u);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, std::string(60, 'a'));
  EXPECT_EQ(b.cmd("NOOP"), kOK);  // b's session goes on
}

// ------------------------------------------------------------------ DATA

TEST_F(ChannelTest, DataNeedsRcpt) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From:eggs@example");
  EXPECT_EQ(c.cmd("DATA"), "503 Error: need RCPT command\r\n");
}

TEST_F(ChannelTest, DataWithArgumentIs501) {
  Conn& c = connect();
  c.cmd("HELO example");
  c.cmd("MAIL From:eggs@example");
  c.cmd("RCPT To:spam@example");
  EXPECT_EQ(c.cmd("DATA spam"), "501 Syntax: DATA\r\n");
  EXPECT_EQ(c.cmd("DATA"), kStartData);
}

TEST_F(ChannelTest, ProcessMessageGetsTheEnvelopeAndLfJoinedData) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example> size=100 body=8bitmime"), kOK);
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("RCPT TO:<ham@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("Subject: hi\r\n\r\nline one\r\nline two\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  const Message& m = server().messages[0];
  EXPECT_EQ(m.peer.host, "127.0.0.1");
  EXPECT_EQ(m.peer.port, kPeerPort);
  EXPECT_EQ(m.mailfrom, "eggs@example");
  EXPECT_EQ(m.rcpttos, (std::vector<std::string>{"spam@example", "ham@example"}));
  EXPECT_EQ(m.data, "Subject: hi\n\nline one\nline two");
  EXPECT_EQ(m.mail_options, (std::vector<std::string>{"SIZE=100", "BODY=8BITMIME"}));
  EXPECT_TRUE(m.rcpt_options.empty());
}

TEST_F(ChannelTest, ProcessMessageReplyIsSentAsIs) {
  server().status = "250 Okish";
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("data\r\n."), "250 Okish\r\n");
}

TEST_F(ChannelTest, RefusedMessageStillEndsTheTransaction) {
  server().status = "554 No thanks";
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("data\r\n."), "554 No thanks\r\n");
  EXPECT_EQ(c.cmd("RCPT TO:<x@example>"), "503 Error: need MAIL command\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<eggs@example>"), kOK);
}

TEST_F(ChannelTest, BaseSMTPServerRefusesTheMessageAndTheSessionGoesOn) {
  // The reference raises NotImplementedError here and drops the client.
  socket_map map;
  smtpd::SMTPServer base({"127.0.0.1", 0}, {"b", 0}, ServerOptions(), &map);
  Conn c(base, map);
  c.reply();
  c.cmd("HELO example");
  c.cmd("MAIL FROM:<eggs@example>");
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("spam\r\n.").substr(0, 4), "554 ");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, TwoMessagesInOneSession) {
  Conn& c = connect();
  to_data(c, "EHLO example");
  EXPECT_EQ(c.cmd("one\r\n."), kOK);
  EXPECT_EQ(c.cmd("MAIL FROM:<ham@example>"), kOK);
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("two\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 2u);
  EXPECT_EQ(server().messages[0].data, "one");
  EXPECT_EQ(server().messages[1].data, "two");
  EXPECT_EQ(server().messages[1].mailfrom, "ham@example");
}

TEST_F(ChannelTest, LeadingDotsAreUnstuffed) {
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("..\r\n.x\r\n...\r\n a.\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, ".\nx\n..\n a.");
}

TEST_F(ChannelTest, DotRightAfter354EndsAnEmptyMessage) {
  // The reference only sees CRLF.CRLF and leaves the client hanging here.
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "");
}

TEST_F(ChannelTest, EmptyMessageAsSmtplibSendsIt) {
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "");
}

TEST_F(ChannelTest, TrailingEmptyLinesAreKept) {
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("a\r\n\r\n\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "a\n\n");
}

TEST_F(ChannelTest, BareLfAndCrDoNotEndTheMessage) {
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("Subject: lf\n\nline one\n.\nline two\rcr\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "Subject: lf\n\nline one\n.\nline two\rcr");
}

TEST_F(ChannelTest, EndOfDataSplitAcrossWrites) {
  Conn& c = connect();
  to_data(c);
  for (const char* piece : {"Subject: split\r\n\r\nbody\r", "\n.", "\r", "\n"}) {
    ASSERT_TRUE(c.write(piece));
    ASSERT_TRUE(c.drain());
  }
  EXPECT_EQ(c.reply(), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "Subject: split\n\nbody");
}

TEST_F(ChannelTest, DotLineSplitFromItsCrLf) {
  Conn& c = connect();
  to_data(c);
  for (const char* piece : {"a\r\n", ".", ".b\r\n", ".", "\r\n"}) {
    ASSERT_TRUE(c.write(piece));
    ASSERT_TRUE(c.drain());
  }
  EXPECT_EQ(c.reply(), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "a\n.b");
}

TEST_F(ChannelTest, WholeSessionWrittenOneByteAtATime) {
  Conn& c = connect();
  std::string session =
      "EHLO example\r\nMAIL FROM:<eggs@example>\r\nRCPT TO:<spam@example>\r\n"
      "DATA\r\n..dot\r\nhi\r\n.\r\nQUIT\r\n";
  for (char ch : session) {
    ASSERT_TRUE(c.write(std::string(1, ch)));
    ASSERT_TRUE(c.drain());
  }
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, ehlo_reply(smtpd::DATA_SIZE_DEFAULT, false) + kOK + kOK +
                      kStartData + kOK + "221 Bye\r\n");
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, ".dot\nhi");
}

TEST_F(ChannelTest, WholeSessionInOneWrite) {
  Conn& c = connect();
  ASSERT_TRUE(c.write(
      "EHLO example\r\nMAIL FROM:<eggs@example>\r\nRCPT TO:<spam@example>\r\n"
      "DATA\r\nSubject: pipelined\r\n\r\nall in one write\r\n.\r\nQUIT\r\n"));
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, ehlo_reply(smtpd::DATA_SIZE_DEFAULT, false) + kOK + kOK +
                      kStartData + kOK + "221 Bye\r\n");
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "Subject: pipelined\n\nall in one write");
}

TEST_F(ChannelTest, MessageSizeLimitCountsLineBreaksExactly) {
  ServerOptions o;
  o.data_size_limit = 10;
  start(o);
  Conn& c = connect();
  to_data(c);
  // 5 + CRLF + 3 = 10 bytes: at the limit.
  EXPECT_EQ(c.cmd("12345\r\n123\r\n."), kOK);
  c.cmd("MAIL FROM:<eggs@example>");
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("12345\r\n1234\r\n."), "552 Error: Too much mail data\r\n");
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "12345\n123");
}

TEST_F(ChannelTest, LeadingDotCountsTowardsTheSizeLimit) {
  // The limit applies to the bytes as sent, before unstuffing.
  ServerOptions o;
  o.data_size_limit = 4;
  start(o);
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("..abc\r\n."), "552 Error: Too much mail data\r\n");
  c.cmd("MAIL FROM:<eggs@example>");
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("..ab\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, ".ab");
}

TEST_F(ChannelTest, TooMuchDataEndsTheTransaction) {
  // The reference stays in DATA after its 552 and swallows what follows.
  ServerOptions o;
  o.data_size_limit = 32;
  start(o);
  Conn& c = connect();
  to_data(c);
  EXPECT_EQ(c.cmd("This message is longer than 32 bytes\r\n."),
            "552 Error: Too much mail data\r\n");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
  EXPECT_EQ(c.cmd("RCPT TO:<ham@example>"), "503 Error: need MAIL command\r\n");
  EXPECT_EQ(c.cmd("MAIL FROM:<ham@example>"), kOK);
  c.cmd("RCPT TO:<spam@example>");
  c.cmd("DATA");
  EXPECT_EQ(c.cmd("short\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "short");
}

TEST_F(ChannelTest, OverlongDataLineIsRefusedWithoutBeingKept) {
  ServerOptions o;
  o.data_size_limit = 1000;
  start(o);
  Conn& c = connect();
  to_data(c);
  ASSERT_TRUE(c.write(std::string(200000, 'x')));
  ASSERT_TRUE(c.drain());
  EXPECT_TRUE(c.channel->received_data.empty());
  EXPECT_EQ(c.cmd("\r\n."), "552 Error: Too much mail data\r\n");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, FloodOfPipelinedCommandsIsAnsweredInOrder) {
  // More replies than the socket and the output limit hold: the channel
  // must stop reading while the client catches up, not drop anything.
  Conn& c = connect();
  const int n = 50000;
  std::string burst;
  for (int i = 0; i < n; ++i) burst += "NOOP\r\n";
  ASSERT_TRUE(c.write(burst + "QUIT\r\n"));
  std::string rest;
  ASSERT_TRUE(c.closed(10000, &rest));
  std::string expected;
  for (int i = 0; i < n; ++i) expected += kOK;
  EXPECT_TRUE(rest == expected + "221 Bye\r\n") << "got " << rest.size() << " bytes";
}

// ------------------------------------------------------------------ line limits

TEST_F(ChannelTest, CommandLineOf512BytesIsAccepted513IsTooLong) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("VRFY " + std::string(507, 'a')).substr(0, 4), "252 ");
  EXPECT_EQ(c.cmd("VRFY " + std::string(508, 'a')), kTooLong);
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, MailLimitStays512AfterHelo) {
  Conn& c = connect();
  c.cmd("HELO example");
  // 11 + 500 + 9 = 520 bytes.
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(500, 'a') + "@example>"), kTooLong);
}

TEST_F(ChannelTest, MailLimitGrowsBy26WithSize) {
  Conn& c = connect();
  c.cmd("ehlo example");
  // "MAIL from:<" + N + "@example>" is N + 20 bytes: 538 fits, 539 does not.
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(519, 'a') + "@example>"), kTooLong);
  EXPECT_EQ(c.cmd("mail from:<" + std::string(518, 'a') + "@example>"), kOK);
}

TEST_F(ChannelTest, MailLimitGrowsBy36WithSizeAndSmtputf8) {
  ServerOptions o;
  o.enable_SMTPUTF8 = true;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(529, 'a') + "@example>"), kTooLong);
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(528, 'a') + "@example>"), kOK);
}

TEST_F(ChannelTest, MailLimitGrowsBy10WithSmtputf8Only) {
  ServerOptions o;
  o.enable_SMTPUTF8 = true;
  o.data_size_limit = 0;
  start(o);
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(503, 'a') + "@example>"), kTooLong);
  EXPECT_EQ(c.cmd("MAIL from:<" + std::string(502, 'a') + "@example>"), kOK);
}

TEST_F(ChannelTest, OtherCommandsStayAt512AfterEhlo) {
  Conn& c = connect();
  c.cmd("EHLO example");
  EXPECT_EQ(c.cmd("NOOP" + std::string(509, ' ')), kTooLong);
  EXPECT_EQ(c.cmd("NOOP" + std::string(508, ' ')), kOK);
  c.cmd("MAIL FROM:<eggs@example>");
  EXPECT_EQ(c.cmd("RCPT TO:<" + std::string(495, 'b') + "@example>"), kTooLong);
  EXPECT_EQ(c.cmd("RCPT TO:<" + std::string(494, 'b') + "@example>"), kOK);
}

TEST_F(ChannelTest, LineLimitsBelongToEachConnection) {
  // The reference shares one limits table and resets it on every connect.
  ServerOptions o;
  o.data_size_limit = 1048;
  start(o);
  Conn& a = connect();
  a.cmd("EHLO a.example");
  Conn& b = connect();
  EXPECT_EQ(a.cmd("MAIL FROM:<" + std::string(510, 'a') + "@example>"), kOK);
  EXPECT_EQ(b.cmd("VRFY " + std::string(508, 'b')), kTooLong);
  b.cmd("HELO b.example");
  EXPECT_EQ(b.cmd("MAIL FROM:<" + std::string(510, 'b') + "@example>"), kTooLong);
  a.cmd("RSET");
  EXPECT_EQ(a.cmd("MAIL FROM:<" + std::string(510, 'a') + "@example>"), kOK);
}

TEST_F(ChannelTest, HugeCommandLineIsRefusedWithoutBeingKept) {
  Conn& c = connect();
  ASSERT_TRUE(c.write("NOOP " + std::string(1 << 20, 'z')));
  ASSERT_TRUE(c.drain());
  EXPECT_EQ(c.cmd(""), kTooLong);
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

// ------------------------------------------------------------------ bad input

TEST_F(ChannelTest, EmptyLineIs500BadSyntax) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd(""), "500 Error: bad syntax\r\n");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, UnknownCommandIs500WithItsUpperCasedName) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("unknown_Cmd arg"),
            "500 Error: command \"UNKNOWN_CMD\" not recognized\r\n");
}

TEST_F(ChannelTest, OnlyASpaceSeparatesTheVerb) {
  Conn& c = connect();
  EXPECT_EQ(c.cmd("HELO\texample"),
            "500 Error: command \"HELO\tEXAMPLE\" not recognized\r\n");
}

TEST_F(ChannelTest, BareLfDoesNotEndACommand) {
  Conn& c = connect();
  // One line: HELO with the argument "example\nNOOP".
  EXPECT_EQ(c.cmd("HELO example\nNOOP"), "250 " + fqdn + "\r\n");
  EXPECT_EQ(c.channel->seen_greeting, "example\nNOOP");
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

TEST_F(ChannelTest, CrAndLfOfACommandInSeparateWrites) {
  Conn& c = connect();
  ASSERT_TRUE(c.write("HELO example\r"));
  ASSERT_TRUE(c.drain());
  ASSERT_TRUE(c.write("\nNOOP\r"));
  ASSERT_TRUE(c.drain());
  ASSERT_TRUE(c.write("\n"));
  EXPECT_EQ(c.reply(), "250 " + fqdn + "\r\n");
  EXPECT_EQ(c.reply(), kOK);
}

TEST_F(ChannelTest, NonUtf8CommandIs5xxAndTheSessionGoesOn) {
  // The reference raises UnicodeDecodeError and drops the client.
  Conn& c = connect();
  std::string r = c.cmd("HELO \xff\xfe");
  ASSERT_GE(r.size(), 4u);
  EXPECT_EQ(r[0], '5');
  EXPECT_EQ(c.cmd("NOOP"), kOK);
  EXPECT_EQ(c.cmd("HELO example"), "250 " + fqdn + "\r\n");
}

TEST_F(ChannelTest, NonAsciiInAReplyDoesNotEndTheSession) {
  // The reference cannot encode this reply as ASCII and drops the client.
  Conn& c = connect();
  std::string r = c.cmd("na\xc3\xafve");
  ASSERT_EQ(r.substr(0, 4), "500 ");
  for (char ch : r) EXPECT_LT(static_cast<unsigned char>(ch), 0x80);
  EXPECT_EQ(c.cmd("NOOP"), kOK);
}

// ------------------------------------------------------------------ time, shutdown

TEST_F(ChannelTest, IdleSessionGets421AndIsClosed) {
  ServerOptions o;
  o.timeout = 0.2;
  start(o);
  Conn& c = connect();
  std::string rest;
  ASSERT_TRUE(c.closed(5000, &rest));
  EXPECT_EQ(rest, "421 " + fqdn + " Error: timeout exceeded\r\n");
}

TEST_F(ChannelTest, StalledMessageGets421AndIsNotDelivered) {
  ServerOptions o;
  o.data_timeout = 0.2;
  start(o);
  Conn& c = connect();
  to_data(c);
  ASSERT_TRUE(c.write("Subject: stalled\r\n"));
  std::string rest;
  ASSERT_TRUE(c.closed(5000, &rest));
  EXPECT_EQ(rest, "421 " + fqdn + " Error: timeout exceeded\r\n");
  EXPECT_TRUE(server().messages.empty());
}

TEST_F(ChannelTest, DataTimeoutCountsFromTheLastRead) {
  // RFC 5321 4.5.3.2.6: the DATA timer covers each chunk received, so a
  // long line still arriving must not be cut off.
  ServerOptions o;
  o.data_timeout = 0.4;
  start(o);
  Conn& c = connect();
  to_data(c);
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(c.write(std::string(100, 'x')));
    Deadline pace(50);
    while (!pace.expired()) map_.poll_once(10);
  }
  EXPECT_EQ(c.cmd("\r\n."), kOK);
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, std::string(1200, 'x'));
}

TEST_F(ChannelTest, HalfClosedClientStillGetsItsReplies) {
  Conn& c = connect();
  ASSERT_TRUE(c.write("HELO example\r\nNOOP\r\n"));
  ASSERT_EQ(::shutdown(c.peer(), SHUT_WR), 0);
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, "250 " + fqdn + "\r\n" + kOK);
}

TEST_F(ChannelTest, ShutdownClosesAnIdleSessionWith421) {
  Conn& c = connect();
  c.cmd("HELO example");
  server().shutdown_gracefully();
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, "421 " + fqdn + " Service shutting down\r\n");
}

TEST_F(ChannelTest, ShutdownLetsTheMessageInFlightFinish) {
  Conn& c = connect();
  to_data(c);
  ASSERT_TRUE(c.write("Subject: late\r\n"));
  ASSERT_TRUE(c.drain());
  server().shutdown_gracefully();
  EXPECT_EQ(c.cmd("\r\nstill here\r\n."), kOK);
  std::string rest;
  ASSERT_TRUE(c.closed(3000, &rest));
  EXPECT_EQ(rest, "421 " + fqdn + " Service shutting down\r\n");
  ASSERT_EQ(server().messages.size(), 1u);
  EXPECT_EQ(server().messages[0].data, "Subject: late\n\nstill here");
}

TEST_F(ChannelTest, ConnectionsPastTheCapGet421) {
  ServerOptions o;
  o.max_connections = 1;
  start(o);
  testutil::Client a, b;
  ASSERT_TRUE(a.connect(server().bound_port()));
  Deadline d(3000);
  while (server().channel_count < 1 && !d.expired()) map_.poll_once(10);
  ASSERT_EQ(server().channel_count, 1u);
  ASSERT_TRUE(b.connect(server().bound_port()));
  std::string got;
  for (int i = 0; i < 300 && got.empty(); ++i) {
    map_.poll_once(10);
    got = b.reply(1);
  }
  EXPECT_EQ(got, "421 " + fqdn + " Error: too many connections\r\n");
  EXPECT_TRUE(b.wait_closed(1000));
}

// ------------------------------------------------------------------ DebuggingServer

TEST(DebuggingServerFormat, HeadersThenXPeerThenBody) {
  smtpd::Peer peer{"127.0.0.1", 1234};
  EXPECT_EQ(smtpd::DebuggingServer::format_message(
                peer, "From: test\n\nh\xc3\xa9llo\xff", {}, {}),
            "---------- MESSAGE FOLLOWS ----------\n"
            "b'From: test'\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'h\\xc3\\xa9llo\\xff'\n"
            "------------ END MESSAGE ------------\n");
}

TEST(DebuggingServerFormat, NoXPeerWithoutAnEmptyLine) {
  smtpd::Peer peer{"127.0.0.1", 1234};
  EXPECT_EQ(smtpd::DebuggingServer::format_message(peer, "data\nmore", {}, {}),
            "---------- MESSAGE FOLLOWS ----------\n"
            "b'data'\n"
            "b'more'\n"
            "------------ END MESSAGE ------------\n");
}

TEST(DebuggingServerFormat, EmptyMessagePrintsOnlyTheBanners) {
  smtpd::Peer peer{"127.0.0.1", 1234};
  EXPECT_EQ(smtpd::DebuggingServer::format_message(peer, "", {}, {}),
            "---------- MESSAGE FOLLOWS ----------\n"
            "------------ END MESSAGE ------------\n");
}

TEST(DebuggingServerFormat, OptionsLinesComeFirst) {
  smtpd::Peer peer{"::1", 1};
  EXPECT_EQ(smtpd::DebuggingServer::format_message(
                peer, "c", {"BODY=8BITMIME", "SMTPUTF8"}, {"X=1"}),
            "---------- MESSAGE FOLLOWS ----------\n"
            "mail options: ['BODY=8BITMIME', 'SMTPUTF8']\n"
            "rcpt options: ['X=1']\n"
            "\n"
            "b'c'\n"
            "------------ END MESSAGE ------------\n");
}

TEST(DebuggingServerFormat, SplitsLinesAtCrLfAndCrLikeSplitlines) {
  smtpd::Peer peer{"10.0.0.1", 1};
  EXPECT_EQ(smtpd::DebuggingServer::format_message(peer, "a\rb\r\nc\n\nd\x0b" "e", {}, {}),
            "---------- MESSAGE FOLLOWS ----------\n"
            "b'a'\n"
            "b'b'\n"
            "b'c'\n"
            "b'X-Peer: 10.0.0.1'\n"
            "b''\n"
            "b'd\\x0be'\n"
            "------------ END MESSAGE ------------\n");
}

TEST(DebuggingServerChannel, PrintsEachMessageAsItArrives) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  socket_map map;
  {
    smtpd::DebuggingServer server({"127.0.0.1", 0}, {"b", 0}, ServerOptions(),
                                  &map, p[1]);
    Conn c(server, map);
    c.reply();
    c.cmd("EHLO example");
    c.cmd("MAIL From:eggs@example BODY=8BITMIME");
    c.cmd("RCPT To:spam@example");
    c.cmd("DATA");
    EXPECT_EQ(c.cmd("Subject: it's\r\n\r\nback\\slash\r\n."), kOK);
    std::string out;
    testutil::read_some(p[0], &out, 1000);
    EXPECT_EQ(out,
              "---------- MESSAGE FOLLOWS ----------\n"
              "mail options: ['BODY=8BITMIME']\n"
              "b\"Subject: it's\"\n"
              "b'X-Peer: 127.0.0.1'\n"
              "b''\n"
              "b'back\\\\slash'\n"
              "------------ END MESSAGE ------------\n");
  }
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
