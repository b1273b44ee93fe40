// MailmanProxy (include/smtpd/proxy.h, src/mailman.h): which recipients
// are lists, the wrapper's arguments and input, how its exit maps to the
// reply, and messages with both list and relayed recipients. Mailman is
// faked by a temporary lists directory and a wrapper shell script that
// records its arguments and input (the script is the test's; the product
// runs the wrapper with execve and an argument vector).
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mailman.h"
#include "smtpd/proxy.h"
#include "upstream_recorder.h"

namespace {

using relaytest::pump_until;
using relaytest::SmtpTestClient;
using relaytest::UpstreamRecorder;
using relaytest::UpstreamSession;
using smtpd::MailmanProxy;
using smtpd::asyncore::socket_map;
namespace mailman = smtpd::mailman;

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

int remove_entry(const char* path, const struct stat*, int, FTW*) {
  return ::remove(path);
}

// A Mailman home: lists/mylist and lists/other.list, and a wrapper that
// appends "$*" to calls.log and saves its input as in.COMMAND.LIST. The
// files exit, signal and go make it exit with a code, kill itself, or
// wait (bounded) until go exists.
class MailmanHome {
 public:
  MailmanHome() {
    char tmpl[] = "/tmp/smtpd-mailman-XXXXXX";
    if (!mkdtemp(tmpl)) return;
    dir = tmpl;
    mkdir(lists().c_str(), 0755);
    mkdir((lists() + "/mylist").c_str(), 0755);
    mkdir((lists() + "/other.list").c_str(), 0755);
    mkdir((lists() + "/.hidden").c_str(), 0755);
    spit(lists() + "/afile", "not a list\n");
    spit(wrapper(),
         "#!/bin/sh\n"
         "d='" + dir + "'\n"
         "echo \"$*\" >> \"$d/calls.log\"\n"
         "cat > \"$d/in.$1.$2\"\n"
         "if [ -f \"$d/wait\" ]; then\n"
         "  i=0\n"
         "  while [ ! -f \"$d/go\" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n"
         "fi\n"
         "[ -f \"$d/signal\" ] && kill -9 $$\n"
         "[ -f \"$d/exit\" ] && exit \"$(cat \"$d/exit\")\"\n"
         "exit 0\n");
    chmod(wrapper().c_str(), 0755);
  }
  ~MailmanHome() {
    if (!dir.empty()) nftw(dir.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
  std::string lists() const { return dir + "/lists"; }
  std::string wrapper() const { return dir + "/wrapper"; }
  std::string calls() const { return slurp(dir + "/calls.log"); }
  std::string input(const std::string& command, const std::string& list) const {
    return slurp(dir + "/in." + command + "." + list);
  }
  void set(const std::string& name, const std::string& content = "") {
    spit(dir + "/" + name, content);
  }

  std::string dir;
};

class MailmanTest : public ::testing::Test {
 protected:
  void start(bool up_listens = true) {
    ASSERT_FALSE(home.dir.empty());
    opts.mailman_lists = home.lists();
    opts.mailman_wrapper = home.wrapper();
    up.reset(new UpstreamRecorder(AF_INET, up_listens));
    ASSERT_GT(up->port(), 0);
    proxy.reset(new MailmanProxy({"127.0.0.1", 0}, {"127.0.0.1", up->port()},
                                 opts, &map));
  }
  std::unique_ptr<SmtpTestClient> client() {
    std::unique_ptr<SmtpTestClient> c(
        new SmtpTestClient(map, proxy->bound_port()));
    EXPECT_TRUE(c->ok());
    EXPECT_TRUE(starts_with(c->cmd("EHLO client.example"), "250 "));
    return c;
  }
  // MAIL, the recipients (each must get `rcpt_reply` if given), DATA and
  // `body` (CRLF lines, without the final dot); returns the final reply.
  std::string transaction(SmtpTestClient& c,
                          const std::vector<std::string>& rcpts,
                          const std::string& body = "Subject: hi\r\n\r\nbody\r\n") {
    EXPECT_EQ("250 OK", c.cmd("MAIL FROM:<eggs@example>"));
    for (const std::string& r : rcpts)
      EXPECT_EQ("250 OK", c.cmd("RCPT TO:<" + r + ">")) << r;
    EXPECT_EQ("354 End data with <CR><LF>.<CR><LF>", c.cmd("DATA"));
    return c.cmd(body + ".");
  }

  MailmanHome home;
  socket_map map;
  smtpd::ServerOptions opts;
  std::unique_ptr<UpstreamRecorder> up;
  std::unique_ptr<MailmanProxy> proxy;
};

// ------------------------------------------------------------------ units

TEST(MailmanUnit, ListTargetsFollowMailmanNames) {
  MailmanHome h;
  ASSERT_FALSE(h.dir.empty());
  auto t = [&](const std::string& a) {
    std::optional<mailman::Target> r = mailman::list_target(a, h.lists());
    return r ? r->command + " " + r->list : std::string("-");
  };
  EXPECT_EQ("post mylist", t("mylist@lists.example"));
  EXPECT_EQ("post mylist", t("MyList@lists.example"));
  EXPECT_EQ("post mylist", t("mylist"));
  EXPECT_EQ("admin mylist", t("mylist-admin@x"));
  EXPECT_EQ("owner mylist", t("MYLIST-OWNER@x"));
  EXPECT_EQ("request mylist", t("mylist-request@x"));
  EXPECT_EQ("join other.list", t("other.list-join@x"));
  EXPECT_EQ("leave other.list", t("other.list-leave@x"));
  EXPECT_EQ("-", t("mylist-bounces@x"));
  EXPECT_EQ("-", t("nolist@x"));
  EXPECT_EQ("-", t("nolist-admin@x"));
  EXPECT_EQ("-", t("-admin@x"));
  EXPECT_EQ("-", t(".hidden@x"));
  EXPECT_EQ("-", t("afile@x"));
  EXPECT_EQ("-", t("../lists/mylist@x"));
  EXPECT_EQ("-", t("\"my list\"@x"));
  EXPECT_EQ("-", t("<>"));
}

TEST(MailmanUnit, FromAndDateAreAddedAtTheEndOfTheHeaders) {
  time_t now = 1700000000;
  std::string m = mailman::prepare_message("Subject: s\n\nbody", "a@b", now);
  std::regex want(
      "Subject: s\nFrom: a@b\nDate: [A-Z][a-z]{2}, \\d{2} [A-Z][a-z]{2} 2023 "
      "\\d{2}:\\d{2}:\\d{2} [-+]\\d{4}\n\nbody\n");
  EXPECT_TRUE(std::regex_match(m, want)) << m;

  m = mailman::prepare_message("from: x\nDATE: y\n\nbody\n", "a@b", now);
  EXPECT_EQ("from: x\nDATE: y\n\nbody\n", m);

  m = mailman::prepare_message("Date: y\nSubject: s", "a@b", now);
  EXPECT_EQ("Date: y\nSubject: s\nFrom: a@b\n", m);

  m = mailman::prepare_message("Date: y\n\nFrom: not a header\n", "a@b", now);
  EXPECT_EQ("Date: y\nFrom: a@b\n\nFrom: not a header\n", m);
}

// ------------------------------------------------------------------ lists

TEST_F(MailmanTest, ListMailGoesToTheWrapperNotUpstream) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK", transaction(*c, {"mylist@lists.example"}));
  EXPECT_EQ("post mylist\n", home.calls());
  std::regex want(
      "Subject: hi\nFrom: eggs@example\nDate: [^\n]+\n\nbody\n");
  std::string in = home.input("post", "mylist");
  EXPECT_TRUE(std::regex_match(in, want)) << in;
  EXPECT_EQ("221 Bye", c->cmd("QUIT"));
  EXPECT_EQ(0u, up->connections());
}

TEST_F(MailmanTest, ListOnlyMailNeedsNoUpstream) {
  start(false);
  auto c = client();
  EXPECT_EQ("250 OK", transaction(*c, {"mylist@x", "other.list-request@x"}));
  EXPECT_EQ("post mylist\nrequest other.list\n", home.calls());
}

TEST_F(MailmanTest, EachCommandAndCaseReachesTheWrapper) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK",
            transaction(*c, {"MyList-Request@x", "mylist-owner@x",
                             "other.list-admin@x", "mylist-join@x",
                             "mylist-leave@x", "MYLIST@x", "mylist@y"},
                        "From: a@b\r\nDate: today\r\n\r\n..dotted\r\n"));
  EXPECT_EQ("request mylist\nowner mylist\nadmin other.list\njoin mylist\n"
            "leave mylist\npost mylist\n",
            home.calls());
  EXPECT_EQ("From: a@b\nDate: today\n\n.dotted\n", home.input("admin", "other.list"));
}

TEST_F(MailmanTest, OtherRecipientsAreRelayedWithXPeer) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK", transaction(*c, {"bob@example", ".hidden@example"}));
  EXPECT_EQ("", home.calls());
  ASSERT_TRUE(pump_until(map, [&] { return up->ended() == 1; }));
  UpstreamSession s = up->sessions()[0];
  std::vector<std::string> want = {"EHLO " + proxy->fqdn(),
                                   "MAIL FROM:<eggs@example>",
                                   "RCPT TO:<bob@example>",
                                   "RCPT TO:<.hidden@example>", "DATA", "QUIT"};
  EXPECT_EQ(want, s.commands);
  EXPECT_EQ("Subject: hi\r\nX-Peer: 127.0.0.1\r\n\r\nbody\r\n.\r\n", s.bodies[0]);
}

TEST_F(MailmanTest, MixedRecipientsAreDeliveredBothWays) {
  start();
  auto c = client();
  EXPECT_EQ("250 OK", transaction(*c, {"mylist@x", "bob@example"}));
  EXPECT_EQ("post mylist\n", home.calls());
  ASSERT_TRUE(pump_until(map, [&] { return up->ended() == 1; }));
  UpstreamSession s = up->sessions()[0];
  EXPECT_EQ("RCPT TO:<bob@example>", s.commands[2]);
  EXPECT_EQ("Subject: hi\r\nX-Peer: 127.0.0.1\r\n\r\nbody\r\n.\r\n", s.bodies[0]);
}

TEST_F(MailmanTest, RefusedRelayRecipientLeavesTheListRecipient) {
  start(false);
  auto c = client();
  EXPECT_EQ("250 OK", c->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", c->cmd("RCPT TO:<mylist@x>"));
  std::string r = c->cmd("RCPT TO:<bob@example>");
  EXPECT_TRUE(starts_with(r, "451 4.4.1 ")) << r;
  EXPECT_EQ(r, c->cmd("RCPT TO:<carol@example>"));  // no second attempt
  c->cmd("DATA");
  EXPECT_EQ("250 OK", c->cmd("list only\r\n."));
  EXPECT_EQ("post mylist\n", home.calls());
}

// ------------------------------------------------------------------ outcomes

TEST_F(MailmanTest, TempFailExitIs451) {
  start();
  home.set("exit", "75");
  auto c = client();
  std::string r = transaction(*c, {"mylist@x"});
  EXPECT_TRUE(starts_with(r, "451 4.3.0 ")) << r;
}

TEST_F(MailmanTest, OtherExitIs554) {
  start();
  home.set("exit", "1");
  auto c = client();
  std::string r = transaction(*c, {"mylist@x"});
  EXPECT_TRUE(starts_with(r, "554 5.3.0 ")) << r;
  EXPECT_EQ("250 OK", c->cmd("NOOP"));
}

TEST_F(MailmanTest, KilledWrapperIs554) {
  start();
  home.set("signal");
  auto c = client();
  std::string r = transaction(*c, {"mylist@x"});
  EXPECT_TRUE(starts_with(r, "554 5.3.0 ")) << r;
  EXPECT_NE(std::string::npos, r.find("signal 9")) << r;
}

TEST_F(MailmanTest, WrapperPastItsTimeIsKilledAnd451) {
  opts.mailman_timeout = 0.3;
  start();
  home.set("wait");
  auto c = client();
  std::string r = transaction(*c, {"mylist@x"});
  EXPECT_TRUE(starts_with(r, "451 4.3.0 ")) << r;
  EXPECT_NE(std::string::npos, r.find("timed out")) << r;
}

TEST_F(MailmanTest, MissingWrapperIs451) {
  start();
  ::unlink(home.wrapper().c_str());
  auto c = client();
  std::string r = transaction(*c, {"mylist@x"});
  EXPECT_TRUE(starts_with(r, "451 4.3.0 ")) << r;
}

TEST_F(MailmanTest, UpstreamRefusalWinsOverListSuccess) {
  start();
  up->on("message", "554 5.7.1 not this one");
  auto c = client();
  EXPECT_EQ("554 5.7.1 not this one", transaction(*c, {"mylist@x", "bob@example"}));
  EXPECT_EQ("post mylist\n", home.calls());
}

TEST_F(MailmanTest, ListTempFailWinsOverUpstreamSuccess) {
  start();
  home.set("exit", "75");
  auto c = client();
  std::string r = transaction(*c, {"bob@example", "mylist@x"});
  EXPECT_TRUE(starts_with(r, "451 4.3.0 ")) << r;
  ASSERT_TRUE(pump_until(map, [&] { return up->ended() == 1; }));
  EXPECT_EQ(1u, up->sessions()[0].bodies.size());
}

TEST_F(MailmanTest, TemporaryFailureWinsOverPermanentOne) {
  start();
  home.set("exit", "1");
  up->on("message", "452 4.3.1 disk full");
  auto c = client();
  EXPECT_EQ("452 4.3.1 disk full", transaction(*c, {"mylist@x", "bob@example"}));
}

// The reactor keeps serving while a wrapper runs: a second client's whole
// transaction is answered while the first wrapper waits for "go".
TEST_F(MailmanTest, RunningWrapperDoesNotBlockOtherClients) {
  start();
  home.set("wait");
  auto slow = client();
  EXPECT_EQ("250 OK", slow->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", slow->cmd("RCPT TO:<mylist@x>"));
  slow->cmd("DATA");
  ASSERT_TRUE(slow->send("waiting\r\n.\r\n"));
  ASSERT_TRUE(pump_until(map, [&] { return home.calls() == "post mylist\n"; }));

  auto fast = client();
  EXPECT_EQ("250 OK", fast->cmd("MAIL FROM:<eggs@example>"));
  EXPECT_EQ("250 OK", fast->cmd("RCPT TO:<bob@example>"));
  fast->cmd("DATA");
  EXPECT_EQ("250 OK", fast->cmd("relayed\r\n."));
  EXPECT_EQ("TIMEOUT", slow->reply(20));

  home.set("go");
  EXPECT_EQ("250 OK", slow->reply());
}

TEST_F(MailmanTest, ClientGoneWhileWrapperRunsIsHarmless) {
  start();
  home.set("wait");
  auto c = client();
  c->cmd("MAIL FROM:<eggs@example>");
  c->cmd("RCPT TO:<mylist@x>");
  c->cmd("DATA");
  ASSERT_TRUE(c->send("bye\r\n.\r\n"));
  ASSERT_TRUE(pump_until(map, [&] { return home.calls() == "post mylist\n"; }));
  c->close();
  home.set("go");
  // The wrapper is still reaped; the next client is served as usual.
  ASSERT_TRUE(pump_until(map, [&] { return proxy->channel_count == 0; }));
  auto d = client();
  EXPECT_EQ("250 OK", transaction(*d, {"other.list@x"}));
  EXPECT_EQ("post mylist\npost other.list\n", home.calls());
}

}  // namespace
