// Unit tests of async_chat (include/smtpd/asynchat.h) over socketpair(2):
// terminators split at every offset, output ordering, close_when_done,
// pause/resume and bounded input. The backend follows $SMTPD_POLLER.
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtpd/asynchat.h"
#include "smtpd/asyncore.h"
#include "socket_pair.h"

namespace {

using smtpd::asynchat::async_chat;
using smtpd::asynchat::simple_producer;
using smtpd::asyncore::socket_map;
using Clock = testpair::Clock;

using testpair::ms_since;

// The peer end is non-blocking.
struct Pair : testpair::SocketPair {
  Pair() : SocketPair(true) {}
};

using testpair::passes;
using testpair::pump;

// Bytes waiting unread in the chat's socket.
int unread(int fd) {
  int n = 0;
  if (::ioctl(fd, FIONREAD, &n) != 0) return -1;
  return n;
}

// Sends `s` and runs passes until the chat has read all of it, so that
// each call arrives as its own read.
::testing::AssertionResult deliver(socket_map& map, Pair& p, int fd,
                                   const std::string& s) {
  if (!p.put(s)) return ::testing::AssertionFailure() << "send failed";
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 300 && ms_since(t0) < 3000; ++i) {
    map.poll_once(10);
    if (unread(fd) == 0) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "the chat did not read "
                                       << s.size() << " bytes";
}

// Records everything; `on_found` may change the terminator or pause.
class Chat : public async_chat {
 public:
  Chat(int fd, socket_map* map) : async_chat(fd, map) {}
  void collect_incoming_data(const char* data, size_t len) override {
    ++pieces;
    max_piece = std::max(max_piece, len);
    total += len;
    if (keep) cur.append(data, len);
    if (check) check(data, len);
  }
  void found_terminator() override {
    items.push_back(cur);
    cur.clear();
    if (on_found) on_found(*this);
  }
  void handle_close() override {
    ++closes;
    async_chat::handle_close();
  }
  std::vector<std::string> items;
  std::string cur;
  bool keep = true;
  size_t pieces = 0;
  size_t max_piece = 0;
  size_t total = 0;
  int closes = 0;
  std::function<void(Chat&)> on_found;
  std::function<void(const char*, size_t)> check;
};

// What a terminator search must give: the pieces before each terminator,
// and the rest after the last one.
std::vector<std::string> split_by(const std::string& in,
                                  const std::string& term, std::string* rest) {
  std::vector<std::string> r;
  size_t pos = 0;
  for (size_t at; (at = in.find(term, pos)) != std::string::npos;
       pos = at + term.size())
    r.push_back(in.substr(pos, at - pos));
  *rest = in.substr(pos);
  return r;
}

// CR and LF alone, empty lines and a CR right before CRLF.
const char kCrlfInput[] =
    "HELO a\rb\nc\r\n\r\nMAIL FROM:<x>\r\n\r\r\n\n\r\nQUIT\r\n";
// Overlapping prefixes of CRLF.CRLF, a dot-stuffed line, empty bodies.
const char kDotInput[] =
    "a\r\n\r\n.\r\nb\r\n.\r\r\n.\r\n\r\n.\r\n..\r\n.\r\n"
    "\r\n.\r\nx\r\n.x\r\n.\r\n";

void expect_split(const Chat& c, const std::string& in,
                  const std::string& term, const std::string& how) {
  std::string rest;
  std::vector<std::string> want = split_by(in, term, &rest);
  ASSERT_TRUE(rest.empty()) << "inputs end with the terminator";
  EXPECT_EQ(want, c.items) << how;
  EXPECT_EQ("", c.cur) << how;
}

void byte_by_byte(const std::string& in, const std::string& term) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator(term);
  for (size_t i = 0; i < in.size(); ++i)
    ASSERT_TRUE(deliver(map, p, p.mine, in.substr(i, 1))) << "byte " << i;
  expect_split(c, in, term, "byte by byte");
}

void every_two_part_split(const std::string& in, const std::string& term) {
  for (size_t k = 0; k <= in.size(); ++k) {
    socket_map map;
    Pair p;
    ASSERT_TRUE(p.ok());
    Chat c(p.mine, &map);
    c.set_terminator(term);
    if (k > 0) {
      ASSERT_TRUE(deliver(map, p, p.mine, in.substr(0, k)));
    }
    if (k < in.size()) {
      ASSERT_TRUE(deliver(map, p, p.mine, in.substr(k)));
    }
    expect_split(c, in, term, "split at " + std::to_string(k));
  }
}

TEST(Asynchat, CrlfTerminatorInOneRead) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  EXPECT_EQ(async_chat::TerminatorKind::string, c.terminator_kind());
  EXPECT_EQ("\r\n", c.terminator());
  ASSERT_TRUE(deliver(map, p, p.mine, kCrlfInput));
  expect_split(c, kCrlfInput, "\r\n", "one read");
}

TEST(Asynchat, CrlfTerminatorFedByteByByte) {
  byte_by_byte(kCrlfInput, "\r\n");
}

TEST(Asynchat, CrlfTerminatorSplitInTwoAtEveryOffset) {
  every_two_part_split(kCrlfInput, "\r\n");
}

TEST(Asynchat, DotTerminatorFedByteByByte) {
  byte_by_byte(kDotInput, "\r\n.\r\n");
}

TEST(Asynchat, DotTerminatorSplitInTwoAtEveryOffset) {
  every_two_part_split(kDotInput, "\r\n.\r\n");
}

TEST(Asynchat, PartialTerminatorIsHeldBackAndTheRestCollected) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n.\r\n");
  ASSERT_TRUE(deliver(map, p, p.mine, "body\r\n."));
  EXPECT_EQ("body", c.cur) << "only the possible terminator start is kept";
  EXPECT_TRUE(c.items.empty());
  ASSERT_TRUE(deliver(map, p, p.mine, "x\r\n"));
  EXPECT_EQ("body\r\n.x", c.cur) << "a false start is passed on";
  ASSERT_TRUE(deliver(map, p, p.mine, ".\r\n"));
  ASSERT_EQ(1u, c.items.size());
  EXPECT_EQ("body\r\n.x", c.items[0]);
}

TEST(Asynchat, CountTerminatorDeliversExactlyNBytes) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator(size_t{5});
  EXPECT_EQ(async_chat::TerminatorKind::count, c.terminator_kind());
  EXPECT_EQ(5u, c.terminator_count());
  ASSERT_TRUE(deliver(map, p, p.mine, "abcdefgh"));
  ASSERT_EQ(1u, c.items.size());
  EXPECT_EQ("abcde", c.items[0]);
  EXPECT_EQ("fgh", c.cur) << "the rest is still passed on";
}

TEST(Asynchat, CountTerminatorCountsAcrossReads) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator(size_t{7});
  const std::string in = "0123456789";
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_TRUE(deliver(map, p, p.mine, in.substr(i, 1)));
    EXPECT_EQ(i >= 6 ? 1u : 0u, c.items.size()) << "after byte " << i;
  }
  ASSERT_EQ(1u, c.items.size());
  EXPECT_EQ("0123456", c.items[0]);
  EXPECT_EQ("789", c.cur);
}

TEST(Asynchat, NoTerminatorPassesEverything) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator(nullptr);
  EXPECT_EQ(async_chat::TerminatorKind::none, c.terminator_kind());
  ASSERT_TRUE(deliver(map, p, p.mine, "abc\r\n"));
  ASSERT_TRUE(deliver(map, p, p.mine, "\r\n.\r\ndef"));
  EXPECT_TRUE(c.items.empty());
  EXPECT_EQ("abc\r\n\r\n.\r\ndef", c.cur);
}

TEST(Asynchat, EmptyStringOrZeroCountMeansNoTerminator) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  c.set_terminator(std::string_view());
  EXPECT_EQ(async_chat::TerminatorKind::none, c.terminator_kind());
  c.set_terminator(size_t{0});
  EXPECT_EQ(async_chat::TerminatorKind::none, c.terminator_kind());
  ASSERT_TRUE(deliver(map, p, p.mine, "a\r\nb"));
  EXPECT_TRUE(c.items.empty());
  EXPECT_EQ("a\r\nb", c.cur);
}

TEST(Asynchat, ChangingStringTerminatorInsideFoundTerminator) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  // SMTP-like: after "DATA" the body runs to CRLF.CRLF, then lines again.
  c.on_found = [](Chat& self) {
    if (self.items.back() == "DATA")
      self.set_terminator("\r\n.\r\n");
    else
      self.set_terminator("\r\n");
  };
  const std::string in =
      "MAIL\r\nDATA\r\nline 1\r\nline 2\r\n.\r\nQUIT\r\nNOOP\r\n";
  ASSERT_TRUE(deliver(map, p, p.mine, in));  // one read
  std::vector<std::string> want = {"MAIL", "DATA", "line 1\r\nline 2", "QUIT",
                                   "NOOP"};
  EXPECT_EQ(want, c.items);
}

TEST(Asynchat, ChangingToCountInsideFoundTerminator) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  // "BDAT n" switches to a count of n bytes, then back to lines.
  c.on_found = [](Chat& self) {
    const std::string& last = self.items.back();
    if (last.compare(0, 5, "BDAT ") == 0)
      self.set_terminator(static_cast<size_t>(std::stoul(last.substr(5))));
    else
      self.set_terminator("\r\n");
  };
  const std::string in = "BDAT 6\r\nab\r\ncdQUIT\r\nBDAT 2\r\n\r\n\r\n";
  ASSERT_TRUE(deliver(map, p, p.mine, in));  // one read
  std::vector<std::string> want = {"BDAT 6", "ab\r\ncd", "QUIT", "BDAT 2",
                                   "\r\n", ""};
  EXPECT_EQ(want, c.items);
}

TEST(Asynchat, PushArrivesInOrder) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.push("220 hello\r\n");
  c.push("");
  c.push("250 ok\r\n");
  std::string got;
  const std::string want = "220 hello\r\n250 ok\r\n";
  EXPECT_TRUE(pump(map, [&] { return !p.drain(&got) || got.size() >= want.size(); }));
  EXPECT_EQ(want, got);
}

TEST(Asynchat, LargePushArrivesIntact) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  std::string want;
  for (int i = 0; i < 4; ++i) {
    std::string block(300 * 1024, static_cast<char>('a' + i));
    for (size_t j = 0; j < block.size(); j += 1000) block[j] = '\n';
    c.push(block);
    want += block;
  }
  std::string got;
  EXPECT_TRUE(pump(map, [&] { return !p.drain(&got) || got.size() >= want.size(); },
                   10000));
  EXPECT_EQ(want.size(), got.size());
  EXPECT_TRUE(want == got) << "content differs";
  EXPECT_EQ(0u, c.output_pending());
}

TEST(Asynchat, ProducerInterleavesInOrderWithPush) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  std::string big;
  for (int i = 0; i < 5000; ++i) big += static_cast<char>('A' + i % 26);
  c.push("1-");
  c.push_with_producer(std::make_unique<simple_producer>(big, 7));
  c.push("-2-");
  c.push_with_producer(std::make_unique<simple_producer>("pp"));
  c.push("-3");
  const std::string want = "1-" + big + "-2-pp-3";
  std::string got;
  EXPECT_TRUE(pump(map, [&] { return !p.drain(&got) || got.size() >= want.size(); }));
  EXPECT_EQ(want, got);
}

TEST(Asynchat, SimpleProducerYieldsPiecesOfBufferSize) {
  simple_producer sp("abcdefghij", 4);
  EXPECT_EQ("abcd", sp.more());
  EXPECT_EQ("efgh", sp.more());
  EXPECT_EQ("ij", sp.more());
  EXPECT_EQ("", sp.more());
  EXPECT_EQ("", sp.more());
}

TEST(Asynchat, CloseWhenDoneClosesAfterTheQueueDrains) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  std::string want(700 * 1024, 'q');  // more than one socket buffer
  want += "221 bye\r\n";
  c.push(want.substr(0, 200 * 1024));
  c.push_with_producer(
      std::make_unique<simple_producer>(want.substr(200 * 1024), 8192));
  c.close_when_done();
  std::string got;
  bool eof = false;
  pump(map, [&] {
    eof = !p.drain(&got);
    return eof;
  }, 10000);
  EXPECT_TRUE(eof) << "no end of file after " << got.size() << " bytes";
  EXPECT_EQ(want.size(), got.size());
  EXPECT_TRUE(want == got) << "content differs";
  EXPECT_TRUE(map.empty());
}

TEST(Asynchat, PeerCloseClosesAfterDeliveringInput) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  ASSERT_TRUE(p.put("QUIT\r\nrest"));
  p.close_peer();
  EXPECT_TRUE(pump(map, [&] { return map.empty(); }));
  EXPECT_EQ(std::vector<std::string>{"QUIT"}, c.items);
  EXPECT_EQ(1, c.closes);
}

TEST(Asynchat, PauseInputStopsFoundTerminatorCalls) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  c.on_found = [](Chat& self) {
    if (self.items.size() == 1) self.pause_input();
  };
  ASSERT_TRUE(p.put("one\r\ntwo\r\nthree\r\n"));  // one read
  passes(map, 5);
  EXPECT_TRUE(c.input_paused());
  ASSERT_TRUE(p.put("four\r\n"));
  passes(map, 5);
  EXPECT_EQ(std::vector<std::string>{"one"}, c.items);
}

TEST(Asynchat, ResumeInputDeliversWhatWaitedInOrder) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  c.on_found = [](Chat& self) {
    if (self.items.size() == 1) self.pause_input();
  };
  ASSERT_TRUE(p.put("one\r\ntwo\r\nthree\r\n"));
  passes(map, 3);
  ASSERT_TRUE(p.put("four\r\nfi"));
  passes(map, 3);
  ASSERT_EQ(1u, c.items.size());
  c.resume_input();
  EXPECT_FALSE(c.input_paused());
  ASSERT_TRUE(p.put("ve\r\n"));
  EXPECT_TRUE(pump(map, [&] { return c.items.size() >= 5; }));
  std::vector<std::string> want = {"one", "two", "three", "four", "five"};
  EXPECT_EQ(want, c.items);
}

TEST(Asynchat, PeerCloseWhilePausedKeepsInputReadBeforeThePause) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  c.on_found = [](Chat& self) {
    if (self.items.size() == 1) self.pause_input();
  };
  // A pipelining client sends its last commands and hangs up at once;
  // "two" and "three" were already read when "one" paused the input.
  ASSERT_TRUE(p.put("one\r\ntwo\r\nthree\r\n"));
  passes(map, 3);
  ASSERT_EQ(1u, c.items.size());
  p.close_peer();
  passes(map, 3);
  EXPECT_EQ(1u, c.items.size()) << "paused input was processed";
  c.resume_input();
  pump(map, [&] { return map.empty(); }, 1000);
  std::vector<std::string> want = {"one", "two", "three"};
  EXPECT_EQ(want, c.items) << "input read before the hang-up was dropped";
  EXPECT_TRUE(map.empty()) << "closes after the end of file";
}

TEST(Asynchat, PausingOnEveryLineAndResumingEachPassDeliversAll) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  // Pauses on every line; the test resumes once per pass, like a server
  // that answers each command later.
  c.on_found = [](Chat& self) { self.pause_input(); };
  ASSERT_TRUE(p.put("a\r\nb\r\nc\r\nd\r\n"));
  for (int i = 0; i < 50 && c.items.size() < 4; ++i) {
    map.poll_once(10);
    if (c.input_paused()) c.resume_input();
  }
  std::vector<std::string> want = {"a", "b", "c", "d"};
  EXPECT_EQ(want, c.items);
}

// Byte i of the large inputs; never CR or LF.
char pattern(size_t i) { return static_cast<char>('a' + (i * 7 + i / 977) % 26); }

// Streams `size` pattern bytes into the chat while running the loop.
void stream_large(socket_map& map, Pair& p, Chat& c, size_t size) {
  std::string chunk;
  size_t sent = 0;
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 200000 && c.total < size && ms_since(t0) < 30000; ++i) {
    if (sent < size) {
      size_t n = std::min<size_t>(256 * 1024, size - sent);
      chunk.resize(n);
      for (size_t j = 0; j < n; ++j) chunk[j] = pattern(sent + j);
      ssize_t w = ::send(p.peer, chunk.data(), n, MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<size_t>(w);
    }
    map.poll_once(10);
  }
}

TEST(Asynchat, LargeInputWithoutTerminatorArrivesInBoundedPieces) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator(nullptr);
  c.keep = false;
  size_t bad_at = std::string::npos;
  size_t seen = 0;
  c.check = [&](const char* d, size_t n) {
    for (size_t j = 0; j < n && bad_at == std::string::npos; ++j)
      if (d[j] != pattern(seen + j)) bad_at = seen + j;
    seen += n;
  };
  const size_t kSize = 10u * 1024 * 1024;
  stream_large(map, p, c, kSize);
  EXPECT_EQ(kSize, c.total);
  EXPECT_LE(c.max_piece, async_chat::ac_in_buffer_size);
  EXPECT_GE(c.pieces, kSize / async_chat::ac_in_buffer_size);
  EXPECT_EQ(std::string::npos, bad_at) << "content differs";
  EXPECT_TRUE(c.items.empty());
}

TEST(Asynchat, LongInputWithoutItsTerminatorArrivesInBoundedPieces) {
  socket_map map;
  Pair p;
  ASSERT_TRUE(p.ok());
  Chat c(p.mine, &map);
  c.set_terminator("\r\n");
  c.keep = false;
  size_t bad_at = std::string::npos;
  size_t seen = 0;
  c.check = [&](const char* d, size_t n) {
    for (size_t j = 0; j < n && bad_at == std::string::npos; ++j)
      if (d[j] != pattern(seen + j)) bad_at = seen + j;
    seen += n;
  };
  const size_t kSize = 10u * 1024 * 1024;
  stream_large(map, p, c, kSize);
  EXPECT_EQ(kSize, c.total);
  EXPECT_LE(c.max_piece, async_chat::ac_in_buffer_size);
  EXPECT_EQ(std::string::npos, bad_at) << "content differs";
  EXPECT_TRUE(c.items.empty());
}

}  // namespace
