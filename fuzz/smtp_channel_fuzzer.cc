// libFuzzer target: arbitrary bytes, written in pieces, into one SMTPChannel
// of a DebuggingServer over socketpair(2), driven by socket_map::poll_once.
//
// Input layout: byte 0 picks the configuration (size limit, SMTPUTF8,
// recipient cap, how the client hangs up), byte 1 how the rest is cut into
// writes, the rest is what the client sends. Every reply the server sends is
// checked against the reply grammar; afterwards the channel must be gone,
// its descriptor closed and the server's channel count back to zero, so a
// leak or a stuck session is a finding, not only a crash.
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "smtpd/smtpd.h"

namespace {

using smtpd::DebuggingServer;
using smtpd::HostPort;
using smtpd::ServerOptions;
using smtpd::asyncore::socket_map;

[[noreturn]] void finding(const char* what, const std::string& detail) {
  fprintf(stderr, "smtp_channel_fuzzer: %s: %s\n", what, detail.c_str());
  abort();
}

// Counts messages handed to process_message (printing still goes to
// /dev/null through the real DebuggingServer code).
class CountingServer : public DebuggingServer {
 public:
  CountingServer(const ServerOptions& o, socket_map* map, int out_fd)
      : DebuggingServer(HostPort{"127.0.0.1", 0}, HostPort{"127.0.0.1", 25},
                        o, map, out_fd) {}

  std::optional<std::string> process_message(
      const smtpd::Peer& peer, const std::string& mailfrom,
      const std::vector<std::string>& rcpttos, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options) override {
    ++messages;
    if (rcpttos.empty() || mailfrom.empty())
      finding("message without envelope", data.substr(0, 64));
    if (options().max_recipients && rcpttos.size() > options().max_recipients)
      finding("recipient cap exceeded", std::to_string(rcpttos.size()));
    if (data_size_limit && data.size() > data_size_limit)
      finding("size limit exceeded", std::to_string(data.size()));
    return DebuggingServer::process_message(peer, mailfrom, rcpttos, data,
                                            mail_options, rcpt_options);
  }

  size_t messages = 0;
};

struct World {
  socket_map map{"poll"};
  int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::vector<std::unique_ptr<CountingServer>> servers;

  World() {
    // Even: 8-bit only, odd: SMTPUTF8. Size limits: 0, 1: the default;
    // 2, 3: 32 bytes; 4, 5: none; 6: 10 bytes; 7: 1048 bytes. 3 and 7 also
    // take at most two recipients per message.
    const size_t sizes[] = {smtpd::DATA_SIZE_DEFAULT, smtpd::DATA_SIZE_DEFAULT,
                            32, 32, 0, 0, 10, 1048};
    for (int i = 0; i < 8; ++i) {
      ServerOptions o;
      o.data_size_limit = sizes[i];
      o.enable_SMTPUTF8 = (i % 2) == 1;
      o.max_recipients = (i == 3 || i == 7) ? 2 : 1000;
      servers.emplace_back(new CountingServer(o, &map, devnull));
    }
  }
};

World& world() {
  static World* w = new World();  // lives for the whole run
  return *w;
}

// xorshift32: the cut points are a pure function of the input.
uint32_t next_random(uint32_t* s) {
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

// Checks and drops complete reply lines (framing only: the reference, too,
// echoes other control bytes of an unknown command) from *buf; returns "354" replies
// seen (messages may not outnumber them).
size_t check_replies(std::string* buf) {
  size_t starts = 0, pos = 0;
  for (;;) {
    size_t eol = buf->find("\r\n", pos);
    if (eol == std::string::npos) break;
    std::string line = buf->substr(pos, eol - pos);
    pos = eol + 2;
    bool ok = line.size() >= 4 && line[0] >= '2' && line[0] <= '5' &&
              line[1] >= '0' && line[1] <= '9' && line[2] >= '0' &&
              line[2] <= '9' && (line[3] == ' ' || line[3] == '-') &&
              line.size() <= 1024 &&
              line.find_first_of("\r\n") == std::string::npos;
    if (!ok) finding("malformed reply", line.substr(0, 200));
    if (line.compare(0, 4, "354 ") == 0) ++starts;
  }
  buf->erase(0, pos);
  if (buf->size() > 1024) finding("reply line too long", buf->substr(0, 200));
  return starts;
}

int unread(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  uint8_t config = size > 0 ? data[0] : 0;
  uint8_t split = size > 1 ? data[1] : 0;
  const char* input = reinterpret_cast<const char*>(data) + (size > 2 ? 2 : size);
  size_t len = size > 2 ? size - 2 : 0;

  CountingServer& server = *w.servers[config & 7];
  size_t messages_before = server.messages;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int peer = sv[1];
  ::fcntl(peer, F_SETFL, ::fcntl(peer, F_GETFL) | O_NONBLOCK);
  sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  addr.ss_family = AF_UNIX;
  server.make_channel(sv[0], addr, sizeof(sa_family_t));
  if (server.channel_count != 1) finding("channel not made", "");

  std::string replies;
  size_t starts = 0;
  auto drain = [&]() {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(peer, buf, sizeof buf, 0)) > 0)
      replies.append(buf, static_cast<size_t>(n));
    starts += check_replies(&replies);
    return n == 0;  // end of file: the server closed
  };
  // Runs passes until the server has read what was written (or closed).
  auto settle = [&]() {
    for (int i = 0; i < 64 && server.channel_count > 0; ++i) {
      w.map.poll_once(0);
      bool closed = drain();
      if (closed || unread(sv[0]) <= 0) break;
    }
  };

  // Cut the input: one write, byte by byte, or pseudo-random pieces.
  uint32_t rng = split | (static_cast<uint32_t>(len) << 8);
  size_t pos = 0;
  while (pos < len && server.channel_count > 0) {
    size_t piece;
    switch (split >> 6) {
      case 0: piece = len; break;
      case 1: piece = 1; break;
      case 2: piece = 1 + next_random(&rng) % 16; break;
      default: piece = 1 + next_random(&rng) % 512; break;
    }
    piece = std::min(piece, len - pos);
    ssize_t n = ::send(peer, input + pos, piece, MSG_NOSIGNAL);
    if (n <= 0) break;  // closed by the server, or its buffer is full
    pos += static_cast<size_t>(n);
    settle();
  }

  // Hang up: half-close (replies must still arrive) or close outright.
  if (config & 8) {
    ::shutdown(peer, SHUT_WR);
    for (int i = 0; i < 256 && server.channel_count > 0; ++i) {
      w.map.poll_once(0);
      drain();
    }
    drain();
  } else {
    ::close(peer);
    peer = -1;
    for (int i = 0; i < 256 && server.channel_count > 0; ++i)
      w.map.poll_once(0);
  }
  if (server.channel_count != 0) finding("channel still open after hang-up", "");
  if (::fcntl(sv[0], F_GETFD) != -1 || errno != EBADF)
    finding("channel descriptor leaked", std::to_string(sv[0]));
  if (peer >= 0) ::close(peer);
  // Only a half-close reads every reply before the channel goes.
  size_t printed = server.messages - messages_before;
  if ((config & 8) && printed > starts)
    finding("more messages than DATA replies",
            std::to_string(printed) + " > " + std::to_string(starts));
  return 0;
}

#ifdef SMTPD_FUZZ_REPLAY
// Without libFuzzer: replays the files named on the command line (or every
// file in a directory) ROUNDS times ($FUZZ_ROUNDS, default 1) and prints the
// resident set size after the first and the last round, so a leak across
// iterations shows as growth even where no sanitizer runs.
#include <dirent.h>

#include <fstream>
#include <sstream>

static long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmRSS:") == 0) return std::stol(line.substr(6));
  return -1;
}

static void add_inputs(const std::string& path, std::vector<std::string>* out) {
  if (DIR* d = ::opendir(path.c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') names.push_back(path + "/" + e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) add_inputs(n, out);
    return;
  }
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  out->push_back(ss.str());
}

int main(int argc, char** argv) {
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) add_inputs(argv[i], &inputs);
  const char* env = getenv("FUZZ_ROUNDS");
  long rounds = env ? atol(env) : 1;
  long first = 0;
  for (long r = 0; r < rounds; ++r) {
    for (const std::string& in : inputs)
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()),
                             in.size());
    if (r == 0) first = rss_kb();
  }
  printf("%zu inputs x %ld rounds: RSS %ld kB after the first round, "
         "%ld kB after the last\n", inputs.size(), rounds, first, rss_kb());
  return 0;
}
#endif
