// MailmanProxy: list recipients are delivered by Mailman 2's mail wrapper,
// every other recipient is relayed as PureProxy does. See mailman.h.
#include "mailman.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <vector>

#include "relay_client.h"
#include "smtpd/asynchat.h"
#include "smtpd/proxy.h"

extern char** environ;

namespace smtpd {
namespace mailman {
namespace {

// waitpid() is polled from a timer, starting fast so a quick wrapper is
// answered quickly, backing off so a slow one costs little.
constexpr double kFirstPoll = 0.002;
constexpr double kMaxPoll = 0.05;
constexpr size_t kMaxListName = 128;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxListName || name[0] == '.')
    return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

bool is_list(const std::string& dir, const std::string& name) {
  struct stat st;
  std::string p = dir + "/" + name;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// "Date:" as RFC 5322 writes it, in local time, in any locale.
// In UTC, computed by hand: localtime_r() or gmtime_r() would pull glibc's
// time zone parser (sscanf, strtod...) into the static binary, 115 KB.
std::string rfc5322_date(time_t now) {
  static const char* const kDays[] = {"Thu", "Fri", "Sat", "Sun",
                                      "Mon", "Tue", "Wed"};  // from 1970-01-01
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr",
                                        "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec"};
  long long t = static_cast<long long>(now);
  long long days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  long long secs = t - days * 86400;
  // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar).
  long long z = days + 719468;
  long long era = (z >= 0 ? z : z - 146096) / 146097;
  long long doe = z - era * 146097;
  long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  long long mp = (5 * doy + 2) / 153;
  long long mday = doy - (153 * mp + 2) / 5 + 1;
  long long mon = mp < 10 ? mp + 3 : mp - 9;  // 1..12
  long long year = yoe + era * 400 + (mon <= 2 ? 1 : 0);
  long long wday = ((days % 7) + 7) % 7;
  char buf[160];  // room for any long long, to keep -Wformat-truncation quiet
  snprintf(buf, sizeof buf, "%s, %02lld %s %04lld %02lld:%02lld:%02lld +0000",
           kDays[wday], mday, kMonths[mon - 1], year, secs / 3600,
           (secs / 60) % 60, secs % 60);
  return buf;
}

// Whether the header block has a field named `name` (lower case).
bool has_field(const std::string& headers, const std::string& name) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t end = headers.find('\n', pos);
    if (end == std::string::npos) end = headers.size();
    std::string line = headers.substr(pos, end - pos);
    pos = end + 1;
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.empty() || line[0] == ' ' ||
        line[0] == '\t')
      continue;
    std::string field = line.substr(0, colon);
    while (!field.empty() && (field.back() == ' ' || field.back() == '\t'))
      field.pop_back();
    std::transform(field.begin(), field.end(), field.begin(), lower);
    if (field == name) return true;
  }
  return false;
}

// Feeds the wrapper's standard input: a socket, not a pipe, so a wrapper
// that stops reading gives EPIPE through send(MSG_NOSIGNAL) rather than
// SIGPIPE.
class Feeder : public asynchat::async_chat {
 public:
  Feeder(int fd, asyncore::socket_map* map) : async_chat(fd, map) {}
  void collect_incoming_data(const char*, size_t) override {}
  void found_terminator() override {}
  bool readable() override { return false; }
  std::string describe() const override { return "mailman wrapper input"; }
};

// Waits for the child. Its descriptor is a private pipe that never
// becomes ready: it only lets the dispatcher keep a deadline in the map.
// No SIGCHLD handler, because signal dispositions belong to the program.
class Waiter : public asyncore::dispatcher {
 public:
  Waiter(asyncore::socket_map* map, const int carrier[2], pid_t pid,
         double timeout, std::string list,
         std::function<void(const Outcome&)> done)
      : dispatcher(carrier[0], map),
        carrier_write_(carrier[1]),
        pid_(pid),
        timeout_(timeout),
        kill_at_(timeout > 0 ? asyncore::monotonic() + timeout : -1),
        list_(std::move(list)),
        done_(std::move(done)) {
    set_timeout(interval_);
  }
  ~Waiter() override {
    if (carrier_write_ >= 0) ::close(carrier_write_);
    if (!reaped_) waitpid(pid_, nullptr, WNOHANG);
  }

  bool readable() override { return false; }
  bool writable() override { return false; }
  std::string describe() const override {
    return "mailman wrapper for " + list_;
  }

  void handle_timeout() override {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      finish(outcome(status));
      return;
    }
    if (r < 0 && errno != EINTR) {
      reaped_ = true;  // gone: someone else reaped it
      finish({Outcome::temporary, std::string("lost the wrapper: ") +
                                      strerror(errno)});
      return;
    }
    double now = asyncore::monotonic();
    if (kill_at_ >= 0 && now >= kill_at_ && !killed_) {
      kill(-pid_, SIGKILL);  // its process group: the wrapper's children too
      kill(pid_, SIGKILL);
      killed_ = true;
    }
    interval_ = std::min(interval_ * 2, kMaxPoll);
    double wait = interval_;
    if (kill_at_ >= 0 && !killed_) wait = std::min(wait, kill_at_ - now);
    set_timeout(std::max(wait, 0.0));
  }

 private:
  Outcome outcome(int status) const {
    if (killed_) {
      char buf[64];
      snprintf(buf, sizeof buf, "timed out after %g s", timeout_);
      return {Outcome::temporary, buf};
    }
    if (WIFEXITED(status)) {
      int code = WEXITSTATUS(status);
      std::string d = "exit status " + std::to_string(code);
      if (code == 0) return {Outcome::ok, d};
      if (code == 75) return {Outcome::temporary, d + " (EX_TEMPFAIL)"};
      return {Outcome::permanent, d};
    }
    if (WIFSIGNALED(status))
      return {Outcome::permanent,
              "killed by signal " + std::to_string(WTERMSIG(status))};
    return {Outcome::permanent, "wait status " + std::to_string(status)};
  }

  void finish(const Outcome& o) {
    if (debugging()) debug("mailman: " + list_ + ": " + o.detail);
    if (o.kind != Outcome::ok)
      fprintf(stderr, "smtpd: mailman wrapper for %s: %s\n", list_.c_str(),
              o.detail.c_str());
    std::function<void(const Outcome&)> done = std::move(done_);
    done_ = nullptr;
    close();
    if (done) done(o);
  }

  int carrier_write_;
  pid_t pid_;
  double timeout_;
  double kill_at_;
  double interval_ = kFirstPoll;
  bool killed_ = false;
  bool reaped_ = false;
  std::string list_;
  std::function<void(const Outcome&)> done_;
};

bool cloexec(int fd) {
  int fl = fcntl(fd, F_GETFD);
  return fl >= 0 && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == 0;
}

void close_all(std::initializer_list<int> fds) {
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
}

// fork/execve of "wrapper command list", stdin from `in`, stdout to our
// stderr (our stdout is for DebuggingServer-style output only).
pid_t spawn(const std::string& wrapper, const Target& t, int in) {
  std::string command = t.command, list = t.list, path = wrapper;
  char* argv[] = {&path[0], &command[0], &list[0], nullptr};
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigset_t none;
  sigemptyset(&none);
  pid_t pid = fork();
  if (pid != 0) return pid;
  // The child: async-signal-safe calls only until execve.
  setpgid(0, 0);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  sigaction(SIGPIPE, &dfl, nullptr);  // the server ignores it; exec keeps that
  if (dup2(in, 0) < 0) _exit(127);
  dup2(2, 1);
  execve(argv[0], argv, environ);
  _exit(127);
}

}  // namespace

std::optional<Target> list_target(const std::string& address,
                                  const std::string& lists_dir) {
  if (address == "<>") return std::nullopt;
  std::string local = address.substr(0, address.rfind('@'));
  std::transform(local.begin(), local.end(), local.begin(), lower);
  if (!valid_name(local)) return std::nullopt;
  if (is_list(lists_dir, local)) return Target{local, "post"};
  static const char* const kCommands[] = {"admin", "owner", "request", "join",
                                          "leave"};
  for (const char* c : kCommands) {
    std::string suffix = std::string("-") + c;
    if (local.size() <= suffix.size() ||
        local.compare(local.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    std::string list = local.substr(0, local.size() - suffix.size());
    if (valid_name(list) && is_list(lists_dir, list)) return Target{list, c};
  }
  return std::nullopt;
}

std::string prepare_message(const std::string& data,
                            const std::string& mailfrom, time_t now) {
  // The headers end at the first empty line (as for X-Peer), or with the
  // text when there is none.
  size_t at = data.size();
  bool need_lf = !data.empty() && data.back() != '\n';
  if (data.empty() || data[0] == '\n') {
    at = 0;
    need_lf = false;
  } else {
    for (size_t i = data.find('\n'); i != std::string::npos;
         i = data.find('\n', i + 1)) {
      if (i + 1 == data.size() || data[i + 1] == '\n') {
        at = i + 1;
        need_lf = false;
        break;
      }
    }
  }
  std::string headers = data.substr(0, at);
  std::string added;
  if (!has_field(headers, "from")) added += "From: " + mailfrom + "\n";
  if (!has_field(headers, "date")) added += "Date: " + rfc5322_date(now) + "\n";
  std::string out = headers;
  if (need_lf && !added.empty()) out += '\n';
  out += added;
  out += data.substr(at);
  if (out.empty() || out.back() != '\n') out += '\n';
  return out;
}

void run_wrapper(asyncore::socket_map& map, const std::string& wrapper,
                 const Target& target, const std::string& message,
                 double timeout, std::function<void(const Outcome&)> done) {
  auto refuse = [&](const std::string& why) {
    fprintf(stderr, "smtpd: mailman wrapper for %s: %s\n",
            target.list.c_str(), why.c_str());
    done({Outcome::temporary, why});
  };
  // A missing or unusable wrapper is the operator's to fix: temporary.
  if (access(wrapper.c_str(), X_OK) != 0) {
    refuse("cannot run " + wrapper + ": " + strerror(errno));
    return;
  }
  int sv[2] = {-1, -1}, carrier[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(carrier) != 0 ||
      !cloexec(sv[0]) || !cloexec(sv[1]) || !cloexec(carrier[0]) ||
      !cloexec(carrier[1])) {
    int err = errno;
    close_all({sv[0], sv[1], carrier[0], carrier[1]});
    refuse(std::string("socketpair/pipe: ") + strerror(err));
    return;
  }
  pid_t pid = spawn(wrapper, target, sv[1]);
  int err = errno;
  ::close(sv[1]);
  if (pid < 0) {
    close_all({sv[0], carrier[0], carrier[1]});
    refuse(std::string("fork: ") + strerror(err));
    return;
  }
  setpgid(pid, pid);  // also here, so a kill at timeout cannot race it
  if (debugging())
    debug("mailman: " + wrapper + " " + target.command + " " + target.list +
          " (pid " + std::to_string(pid) + ")");
  Feeder* in = map.adopt(std::unique_ptr<Feeder>(new Feeder(sv[0], &map)));
  in->push(message);
  in->close_when_done();
  map.adopt(std::unique_ptr<Waiter>(
      new Waiter(&map, carrier, pid, timeout, target.list, std::move(done))));
}

}  // namespace mailman

// ----------------------------------------------------------- MailmanProxy

namespace {

// The list recipients of one message, one wrapper run after another;
// `done` gets the failure replies, in order. Cancelling only silences it:
// a wrapper already running is left to finish and is still reaped.
struct ListDelivery : std::enable_shared_from_this<ListDelivery> {
  asyncore::socket_map* map;
  std::string wrapper;
  double timeout;
  std::vector<relay::Transaction::ListTarget> targets;
  std::string message;
  size_t next = 0;
  std::vector<std::string> failures;
  std::function<void(std::vector<std::string>)> done;

  void run_next() {
    if (!done) return;  // cancelled
    if (next == targets.size()) {
      auto d = std::move(done);
      done = nullptr;
      d(std::move(failures));
      return;
    }
    const relay::Transaction::ListTarget& t = targets[next++];
    mailman::Target target{t.list, t.command};
    std::shared_ptr<ListDelivery> self = shared_from_this();
    mailman::run_wrapper(*map, wrapper, target, message, timeout,
                         [self, target](const mailman::Outcome& o) {
                           self->record(target, o);
                           self->run_next();
                         });
  }

  void record(const mailman::Target& t, const mailman::Outcome& o) {
    if (o.kind == mailman::Outcome::temporary)
      failures.push_back("451 4.3.0 Mailman could not take the message for " +
                         t.list + " now (" + o.detail + ")");
    else if (o.kind == mailman::Outcome::permanent)
      failures.push_back("554 5.3.0 Mailman refused the message for " +
                         t.list + " (" + o.detail + ")");
  }
};

// One reply for a message with list and relayed recipients. SMTP has a
// single reply after DATA, so any failure means no 250: the first
// temporary failure wins (the client keeps the message and retries), else
// the first permanent one (the upstream's own reply when it refused).
// Parts that did succeed get the message again when the client retries:
// a duplicate is preferred to a loss.
struct Combined {
  int waiting = 0;
  std::optional<std::string> upstream;  // the upstream's refusal, if any
  std::vector<std::string> lists;
  relay::Transaction::Done done;

  void part_done() {
    if (--waiting > 0) return;
    std::vector<std::string> all;
    if (upstream) all.push_back(*upstream);
    all.insert(all.end(), lists.begin(), lists.end());
    std::optional<std::string> reply;
    for (const std::string& r : all)
      if (!reply && r[0] == '4') reply = r;
    if (!reply && !all.empty()) reply = all.front();
    auto d = std::move(done);
    done = nullptr;
    if (d) d(reply);
  }
};

}  // namespace

MailmanProxy::MailmanProxy(const HostPort& localaddr,
                           const HostPort& remoteaddr,
                           const ServerOptions& options,
                           asyncore::socket_map* map)
    : PureProxy(localaddr, remoteaddr, options, map) {}

// MAIL is only noted: the upstream session opens at the first recipient
// that is not a list, so list-only mail never depends on the upstream.
Verdict MailmanProxy::on_mail(SMTPChannel& ch, const std::string& address) {
  if (!relay::safe_path(address))
    return Verdict::say("501 5.1.7 Bad sender address syntax");
  relay::Transaction& t = transaction(ch);
  t.reset();
  t.mailfrom = address;
  t.size = client_param(ch, "SIZE");
  t.body = client_param(ch, "BODY");
  return Verdict::ok();
}

Verdict MailmanProxy::on_rcpt(SMTPChannel& ch, const std::string& address) {
  if (!relay::safe_path(address))
    return Verdict::say("501 5.1.3 Bad recipient address syntax");
  relay::Transaction& t = transaction(ch);
  if (std::optional<mailman::Target> m =
          mailman::list_target(address, options().mailman_lists)) {
    bool seen = false;
    for (const auto& l : t.lists)
      if (l.list == m->list && l.command == m->command) seen = true;
    if (!seen) t.lists.push_back({m->list, m->command});
    return Verdict::ok();
  }
  if (t.mail_refusal) return Verdict::say(*t.mail_refusal);
  if (t.open_upstream())
    return t.answer(
        [&](relay::Transaction::Done done) { t.rcpt(address, done); });
  if (!t.fresh()) return Verdict::say(relay::kRelayLost);
  std::string rcpt = address;
  return t.answer([&t, rcpt](relay::Transaction::Done done) {
    t.open([&t, rcpt, done](std::optional<std::string> r) {
      if (r) {
        t.mail_refusal = r;
        done(r);
      } else {
        t.rcpt(rcpt, done);
      }
    });
  });
}

Verdict MailmanProxy::on_data(SMTPChannel& ch) {
  relay::Transaction& t = transaction(ch);
  if (t.relayed == 0) return Verdict::ok();  // list recipients only
  return t.answer([&t](relay::Transaction::Done done) { t.data(done); });
}

Verdict MailmanProxy::on_message(SMTPChannel& ch) {
  relay::Transaction& t = transaction(ch);
  if (t.lists.empty()) return PureProxy::on_message(ch);
  auto lists = std::make_shared<ListDelivery>();
  lists->map = &map();
  lists->wrapper = options().mailman_wrapper;
  lists->timeout = options().mailman_timeout;
  lists->targets = t.lists;
  lists->message = mailman::prepare_message(ch.received_data, t.mailfrom,
                                            time(nullptr));
  bool relayed = t.relayed > 0;
  std::string wire;
  if (relayed) wire = wire_format(add_x_peer(ch.received_data, ch.peer.host));
  return t.answer([&](relay::Transaction::Done done) {
    auto c = std::make_shared<Combined>();
    c->waiting = relayed ? 2 : 1;
    c->done = std::move(done);
    if (relayed)
      t.message(std::move(wire), [c](std::optional<std::string> r) {
        c->upstream = std::move(r);
        c->part_done();
      });
    lists->done = [c](std::vector<std::string> failures) {
      c->lists = std::move(failures);
      c->part_done();
    };
    t.cancel_lists = [lists] { lists->done = nullptr; };
    lists->run_next();
  });
}

}  // namespace smtpd
