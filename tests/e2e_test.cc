// Real SMTP clients against the smtpd binary: Python's smtplib (run as
// "python3 -c") and swaks. Skipped when the client is not installed.
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using testutil::Child;

const char kEnd[] = "------------ END MESSAGE ------------\n";
const char kSwaks[] = "/usr/bin/swaks";

// True if python3 (with smtplib) runs from $PATH.
bool have_python() {
  static int cached = -1;
  if (cached < 0) {
    Child c = testutil::run({"/usr/bin/env", "python3", "-c", "import smtplib"}, 10000);
    cached = c.exited_with(0) ? 1 : 0;
  }
  return cached == 1;
}

// Runs a Python script with the port as argv[1]; at most 20 s.
Child python(const std::string& script, int port) {
  return testutil::run({"/usr/bin/env", "python3", "-c", script, std::to_string(port)},
                       20000);
}

class E2eTest : public testutil::BinaryTest {};

TEST_F(E2eTest, SmtplibDeliversDotLinesAndNonAsciiBody) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  start();
  const std::string script =
      "import smtplib, sys\n"
      "msg = (b'Subject: smtplib\\r\\n\\r\\n.leading dot\\r\\n'\n"
      "       b'na\\xc3\\xafve body\\r\\n..two dots\\r\\n')\n"
      "with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=10) as s:\n"
      "    print(s.sendmail('b@example', ['a@example', 'c@example'], msg))\n"
      "print(len(msg))\n";
  Child py = python(script, port);
  ASSERT_TRUE(py.exited_with(0)) << py.err;
  // smtplib prints the refused recipients ({}) and we print the size.
  ASSERT_EQ(py.out.substr(0, 3), "{}\n") << py.out;
  std::string size = py.out.substr(3, py.out.size() - 4);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000)) << server.out;
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\n"
            "mail options: ['SIZE=" + size + "']\n"
            "b'Subject: smtplib'\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'.leading dot'\n"
            "b'na\\xc3\\xafve body'\n"
            "b'..two dots'\n" + std::string(kEnd));
}

TEST_F(E2eTest, SmtplibSmtputf8Message) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  start({"-u"});
  const std::string script =
      "import smtplib, sys\n"
      "msg = 'Subject: utf8\\r\\n\\r\\nna\\u00efve\\r\\n'.encode('utf-8')\n"
      "with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=10) as s:\n"
      "    s.sendmail('na\\u00efve@example', ['a@example'], msg,\n"
      "               mail_options=['SMTPUTF8', 'BODY=8BITMIME'])\n"
      "print(len(msg))\n";
  Child py = python(script, port);
  ASSERT_TRUE(py.exited_with(0)) << py.err;
  std::string size = py.out.substr(0, py.out.size() - 1);
  ASSERT_TRUE(server.read_out_until(kEnd, 5000)) << server.out;
  EXPECT_EQ(server.out,
            "---------- MESSAGE FOLLOWS ----------\n"
            "mail options: ['SIZE=" + size + "', 'SMTPUTF8', 'BODY=8BITMIME']\n"
            "b'Subject: utf8'\n"
            "b'X-Peer: 127.0.0.1'\n"
            "b''\n"
            "b'na\\xc3\\xafve'\n" + std::string(kEnd));
}

TEST_F(E2eTest, SmtplibSeesTheSizeLimit) {
  if (!have_python()) GTEST_SKIP() << "no python3";
  start({"-s", "100"});
  const std::string script =
      "import smtplib, sys\n"
      "with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=10) as s:\n"
      "    s.ehlo()\n"
      "    print(s.esmtp_features.get('size'))\n"
      "    try:\n"
      "        s.sendmail('b@example', ['a@example'], b'x' * 200)\n"
      "    except smtplib.SMTPSenderRefused as e:\n"
      "        print(e.smtp_code)\n";
  Child py = python(script, port);
  ASSERT_TRUE(py.exited_with(0)) << py.err;
  EXPECT_EQ(py.out, "100\n552\n");
}

TEST_F(E2eTest, GreetingNameIsPythonsGetfqdn) {
  // The reference greets with socket.getfqdn().
  if (!have_python()) GTEST_SKIP() << "no python3";
  start();
  Child py = python(
      "import smtplib, socket, sys\n"
      "s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=10)\n"
      "print(s.ehlo()[1].decode().splitlines()[0])\n"
      "print(socket.getfqdn())\n"
      "s.quit()\n",
      port);
  ASSERT_TRUE(py.exited_with(0)) << py.err;
  size_t nl = py.out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(py.out.substr(0, nl + 1), py.out.substr(nl + 1))
      << "EHLO name, then Python's getfqdn(): " << py.out;
}

TEST_F(E2eTest, SwaksDelivers) {
  if (!testutil::file_exists(kSwaks)) GTEST_SKIP() << "no swaks";
  start();
  Child sw = testutil::run(
      {kSwaks, "--server", "127.0.0.1:" + std::to_string(port), "--to", "a@example",
       "--from", "b@example", "--header", "Subject: from swaks", "--body",
       "first line\n.dot line\nlast line", "--timeout", "10"},
      20000);
  ASSERT_TRUE(sw.exited_with(0)) << sw.out << sw.err;
  EXPECT_NE(sw.out.find("<-  250 OK"), std::string::npos) << sw.out;
  ASSERT_TRUE(server.read_out_until(kEnd, 5000)) << server.out;
  const std::string& out = server.out;
  size_t subject = out.find("b'Subject: from swaks'\n");
  size_t peer = out.find("b'X-Peer: 127.0.0.1'\nb''\n");
  size_t body = out.find("b'first line'\nb'.dot line'\nb'last line'\n");
  EXPECT_NE(subject, std::string::npos) << out;
  EXPECT_NE(peer, std::string::npos) << out;
  EXPECT_NE(body, std::string::npos) << out;
  EXPECT_LT(subject, peer);
  EXPECT_LT(peer, body);
  EXPECT_EQ(out.find("---------- MESSAGE FOLLOWS ----------\n"), 0u);
}

TEST_F(E2eTest, SwaksAskingForPipeliningFallsBackAndDelivers) {
  // PIPELINING is not offered; swaks then sends one command at a time.
  if (!testutil::file_exists(kSwaks)) GTEST_SKIP() << "no swaks";
  start();
  Child sw = testutil::run(
      {kSwaks, "--server", "127.0.0.1:" + std::to_string(port), "--to",
       "a@example,c@example", "--from", "b@example", "--pipeline", "--body", "piped",
       "--timeout", "10"},
      20000);
  EXPECT_TRUE(sw.exited_with(0)) << sw.out << sw.err;
  ASSERT_TRUE(server.read_out_until(kEnd, 5000)) << sw.out << sw.err;
  EXPECT_NE(server.out.find("b'piped'\n"), std::string::npos) << server.out;
}

}  // namespace
