// RelayClient (an SMTP client on the reactor) and Transaction (one client
// session's envelope, passed upstream as it arrives). See relay_client.h.
#include "relay_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include <memory>
#include <stdexcept>
#include <system_error>

namespace smtpd {
namespace relay {

const char kRelayLost[] =
    "451 4.4.2 Upstream connection lost; transaction aborted, send RSET";

namespace {

// Longer reply lines, or more lines, are a broken or hostile upstream.
constexpr size_t kMaxReplyLine = 4096;
constexpr size_t kMaxReplyLines = 256;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string upper_word(const std::string& s) {
  std::string w = s.substr(0, s.find(' '));
  for (char& c : w)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return w;
}

std::string path(const std::string& address) {
  return address == "<>" ? address : "<" + address + ">";
}

}  // namespace

bool safe_path(const std::string& address) {
  for (char c : address)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

// ------------------------------------------------------------ RelayClient

RelayClient::RelayClient(asyncore::socket_map* map, Listener* listener,
                         const ServerOptions& options, std::string helo_name)
    : async_chat(map),
      listener_(listener),
      connect_timeout_(options.relay_connect_timeout),
      reply_timeout_(options.relay_timeout),
      helo_name_(std::move(helo_name)) {}

// A close that bypassed fail() (handle_error, close_all) still tells the
// listener, so it never keeps a pointer to a freed client.
RelayClient::~RelayClient() {
  Listener* l = listener_;
  listener_ = nullptr;
  if (l) l->relay_reply({0, "connection closed", Reply::Failure::lost});
}

void RelayClient::start(const netaddr::Address& addr) {
  where_ = asyncore::format_address(addr.sa(), addr.len);
  if (debugging()) debug("relay: connecting to " + where_);
  try {
    create_socket(addr.family(), SOCK_STREAM);
    int one = 1;
    setsockopt(fileno(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_terminator("\n");
    set_timeout(connect_timeout_ > 0 ? connect_timeout_ : -1);
    connect(addr.sa(), addr.len);
  } catch (...) {
    listener_ = nullptr;  // the caller hears of it from the exception
    state_ = State::dead;
    throw;
  }
}

void RelayClient::handle_connect() {
  if (debugging()) debug("relay: connected to " + where_);
  state_ = State::greeting;
  wait_reply();
}

bool RelayClient::readable() {
  return state_ != State::connecting && state_ != State::dead &&
         async_chat::readable();
}

void RelayClient::wait_reply() {
  set_timeout(reply_timeout_ > 0 ? reply_timeout_ : -1);
}

// A long message may take a while to send: the reply clock starts anew
// with each write that makes progress.
void RelayClient::handle_write() {
  async_chat::handle_write();
  if (state_ == State::waiting) wait_reply();
}

void RelayClient::send_line(const std::string& line) {
  if (debugging()) debug("relay: >>> " + line);
  push(line + "\r\n");
}

void RelayClient::command(const std::string& line) {
  if (state_ != State::idle)
    throw std::logic_error("relay: command while the upstream is busy");
  last_verb_ = upper_word(line);
  in_body_ = false;
  send_line(line);
  state_ = State::waiting;
  wait_reply();
}

void RelayClient::send_message(std::string wire) {
  if (state_ != State::idle || !in_body_)
    throw std::logic_error("relay: message without a 354");
  if (debugging())
    debug("relay: >>> (message, " + std::to_string(wire.size()) + " bytes)");
  last_verb_ = ".";
  in_body_ = false;
  push(wire);
  state_ = State::waiting;
  wait_reply();
}

void RelayClient::finish() {
  listener_ = nullptr;
  switch (state_) {
    case State::connecting:
      state_ = State::dead;
      close();
      break;
    case State::greeting:
    case State::ehlo:
    case State::helo:
    case State::waiting:
      quit_after_reply_ = true;
      break;
    case State::idle:
      if (in_body_) {  // QUIT now would become part of the message
        state_ = State::dead;
        close();
      } else {
        send_line("QUIT");
        state_ = State::quitting;
        wait_reply();
      }
      break;
    case State::quitting:
    case State::dead:
      break;
  }
}

void RelayClient::collect_incoming_data(const char* data, size_t len) {
  if (line_.size() + len > kMaxReplyLine) {
    line_overflow_ = true;
    return;
  }
  line_.append(data, len);
}

// Reply lines: "NNN-text" continues, "NNN text" (or "NNN") ends a reply.
void RelayClient::found_terminator() {
  std::string line;
  line.swap(line_);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line_overflow_) {
    fail(Reply::Failure::protocol, "reply line too long");
    return;
  }
  bool sep_ok = line.size() == 3 ||
                (line.size() > 3 && (line[3] == ' ' || line[3] == '-'));
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) ||
      !is_digit(line[2]) || !sep_ok) {
    fail(Reply::Failure::protocol, "malformed reply");
    return;
  }
  int code = std::stoi(line.substr(0, 3));
  if (code < 200 || code > 599) {
    fail(Reply::Failure::protocol, "reply code " + line.substr(0, 3));
    return;
  }
  if (lines_.size() >= kMaxReplyLines) {
    fail(Reply::Failure::protocol, "reply too long");
    return;
  }
  std::string text = line.size() > 4 ? line.substr(4) : std::string();
  lines_.push_back(text);
  if (line.size() > 3 && line[3] == '-') return;
  if (debugging()) debug("relay: <<< " + line);
  on_reply(code, text);
  lines_.clear();
}

void RelayClient::on_reply(int code, const std::string& text) {
  if (state_ == State::quitting) {
    state_ = State::dead;
    close();
    return;
  }
  if (state_ == State::idle || state_ == State::dead) return;  // unasked
  bool body = state_ == State::waiting && last_verb_ == "DATA" && code == 354;
  if (quit_after_reply_) {
    state_ = State::idle;
    in_body_ = body;
    finish();
    return;
  }
  if (state_ != State::waiting) {
    on_greeting_reply(code, text);
    return;
  }
  state_ = State::idle;
  in_body_ = body;
  set_timeout(-1);
  report({code, text, Reply::Failure::none});
}

// Greeting, then EHLO, and HELO if EHLO is refused (as smtplib does); the
// listener hears only how it ended.
void RelayClient::on_greeting_reply(int code, const std::string& text) {
  bool ok = code / 100 == 2;
  if (state_ == State::greeting && ok) {
    send_line("EHLO " + helo_name_);
    state_ = State::ehlo;
    wait_reply();
    return;
  }
  if (state_ == State::ehlo && !ok && code != 421) {
    send_line("HELO " + helo_name_);
    state_ = State::helo;
    wait_reply();
    return;
  }
  if (state_ == State::ehlo && ok) {
    for (size_t i = 1; i < lines_.size(); ++i) {
      std::string kw = upper_word(lines_[i]);
      if (kw == "SIZE") size_offered_ = true;
      if (kw == "8BITMIME") eightbit_offered_ = true;
    }
  }
  state_ = State::idle;
  set_timeout(-1);
  report({code, text, Reply::Failure::none});
}

void RelayClient::report(const Reply& r) {
  Listener* l = listener_;
  if (!l) return;
  if (r.code == 0) listener_ = nullptr;
  l->relay_reply(r);  // may finish() this client; touch nothing after
}

void RelayClient::fail(Reply::Failure kind, const std::string& why) {
  if (state_ == State::dead) return;
  bool quitting = state_ == State::quitting;
  state_ = State::dead;
  close();
  if (listener_ && !quitting)
    fprintf(stderr, "smtpd: relay to %s: %s\n", where_.c_str(), why.c_str());
  else if (debugging())
    debug("relay: " + where_ + ": " + why);
  report({0, why, kind});
}

void RelayClient::handle_close() {
  int err = errno;
  if (state_ == State::connecting)
    fail(Reply::Failure::connect, err ? strerror(err) : "connection failed");
  else if (state_ == State::quitting)
    fail(Reply::Failure::lost, "closed after QUIT");
  else
    fail(Reply::Failure::lost, "connection closed");
}

void RelayClient::handle_timeout() {
  if (state_ == State::connecting)
    fail(Reply::Failure::connect, "connect timed out");
  else
    fail(Reply::Failure::timeout, "timed out waiting for a reply");
}

void RelayClient::handle_error(const std::exception& e) {
  fail(Reply::Failure::protocol, e.what());
}

// ------------------------------------------------------------ Transaction

Transaction::Transaction(SMTPServer& server, SMTPChannel& ch)
    : channel(ch), server_(server) {}

Transaction::~Transaction() {
  done_ = nullptr;
  end();
  if (cancel_lists) cancel_lists();
}

Verdict Transaction::answer(const std::function<void(Done)>& start) {
  in_hook_ = true;
  hook_done_ = false;
  hook_reply_.reset();
  start([this](std::optional<std::string> r) { deliver(std::move(r)); });
  in_hook_ = false;
  if (!hook_done_) return Verdict::later();
  return hook_reply_ ? Verdict::say(*hook_reply_) : Verdict::ok();
}

void Transaction::deliver(std::optional<std::string> reply) {
  if (in_hook_) {
    hook_done_ = true;
    hook_reply_ = std::move(reply);
    return;
  }
  channel.complete(std::move(reply));
}

void Transaction::step(std::optional<std::string> reply) {
  Done d = std::move(done_);
  done_ = nullptr;
  if (d) d(std::move(reply));
}

std::string Transaction::where() const {
  const HostPort& r = server_.remoteaddr();
  std::string host = r.host.find(':') != std::string::npos
                         ? "[" + r.host + "]" : r.host;
  return host + ":" + std::to_string(r.port);
}

void Transaction::open(Done done) {
  end();
  relayed = 0;
  done_ = std::move(done);
  state_ = State::opening;
  std::string err;
  const HostPort& r = server_.remoteaddr();
  // TODO: a host name is resolved here, blocking the reactor while the
  // resolver waits; numeric addresses and /etc/hosts names do not wait.
  addrs_ = netaddr::resolve(r.host, r.port, false, &err);
  if (addrs_.empty()) {
    state_ = State::idle;
    fprintf(stderr, "smtpd: relay to %s: %s\n", where().c_str(), err.c_str());
    step("451 4.4.3 Cannot resolve upstream " + where() + ": " + err);
    return;
  }
  next_addr_ = 0;
  connect_error_.clear();
  try_connect();
}

// Each address in turn, as socket.create_connection does.
void Transaction::try_connect() {
  while (next_addr_ < addrs_.size()) {
    const netaddr::Address& a = addrs_[next_addr_++];
    std::unique_ptr<RelayClient> c(new RelayClient(
        &server_.map(), this, server_.options(), server_.fqdn()));
    try {
      c->start(a);
    } catch (const std::system_error& e) {
      connect_error_ = e.code().message();
      continue;
    }
    client_ = server_.map().adopt(std::move(c));
    return;
  }
  state_ = State::idle;
  fprintf(stderr, "smtpd: relay to %s: %s\n", where().c_str(),
          connect_error_.c_str());
  step("451 4.4.1 Cannot connect to upstream " + where() + ": " +
       connect_error_);
}

void Transaction::rcpt(const std::string& address, Done done) {
  if (state_ != State::open || !client_ || !client_->ready()) {
    done(std::string(kRelayLost));
    return;
  }
  done_ = std::move(done);
  state_ = State::rcpt;
  client_->command("RCPT TO:" + path(address));
}

void Transaction::data(Done done) {
  if (state_ != State::open || !client_ || !client_->ready()) {
    done(std::string(kRelayLost));
    return;
  }
  done_ = std::move(done);
  state_ = State::data;
  client_->command("DATA");
}

void Transaction::message(std::string wire, Done done) {
  if (state_ != State::body || !client_ || !client_->ready()) {
    done(std::string(kRelayLost));
    return;
  }
  done_ = std::move(done);
  state_ = State::message;
  client_->send_message(std::move(wire));
}

void Transaction::refuse_or_break(const Reply& r, bool broken) {
  if (!broken) {
    state_ = State::open;
    step(refusal_reply(r));
    return;
  }
  std::string reply = r.code ? refusal_reply(r) : failure_reply(r);
  end();
  state_ = State::broken;
  step(reply);
}

void Transaction::end() {
  RelayClient* c = client_;
  client_ = nullptr;
  state_ = State::idle;
  if (c) c->finish();
}

void Transaction::reset() {
  end();
  relayed = 0;
  lists.clear();
  mail_refusal.reset();
  if (cancel_lists) cancel_lists();
  cancel_lists = nullptr;
}

std::string Transaction::failure_reply(const Reply& r) const {
  switch (r.failure) {
    case Reply::Failure::connect:
      return "451 4.4.1 Cannot connect to upstream " + where() + ": " + r.text;
    case Reply::Failure::protocol:
      return "451 4.5.0 Upstream " + where() + ": " + r.text;
    default:
      return "451 4.4.2 Upstream " + where() + ": " + r.text;
  }
}

// The upstream's own words, with two exceptions: 421 closes the upstream
// session, not ours, so the client hears 451; and a success code out of
// turn must never reach the channel, which would take it as acceptance.
std::string Transaction::refusal_reply(const Reply& r) const {
  if (r.code / 100 == 2 || r.code / 100 == 3)
    return "451 4.5.0 Upstream " + where() + " answered " +
           std::to_string(r.code) + " out of turn";
  std::string text = r.text.empty() ? "Upstream refused" : r.text;
  if (r.code == 421) return "451 " + text;
  return std::to_string(r.code) + " " + text;
}

void Transaction::relay_reply(const Reply& r) {
  if (r.code == 0) client_ = nullptr;  // it has forgotten us already
  bool ok2 = r.code / 100 == 2;
  switch (state_) {
    case State::opening:
      if (r.failure == Reply::Failure::connect &&
          next_addr_ < addrs_.size()) {
        connect_error_ = r.text;
        try_connect();
      } else if (r.code == 0) {
        state_ = State::idle;
        step(failure_reply(r));
      } else if (ok2) {
        state_ = State::mail;
        std::string cmd = "MAIL FROM:" + path(mailfrom);
        if (!size.empty() && client_->size_offered()) cmd += " SIZE=" + size;
        // TODO: 8-bit mail to an upstream without 8BITMIME goes as it is,
        // neither converted nor refused (RFC 6152 asks for one of them).
        if (!body.empty() && client_->eightbit_offered())
          cmd += " BODY=" + body;
        client_->command(cmd);
      } else {
        end();
        step(refusal_reply(r));
      }
      return;
    case State::mail:
      if (ok2) {
        state_ = State::open;
        relayed = 0;
        step(std::nullopt);
      } else {
        std::string reply = r.code ? refusal_reply(r) : failure_reply(r);
        end();
        step(reply);
      }
      return;
    case State::rcpt:
      if (ok2) {
        state_ = State::open;
        ++relayed;
        step(std::nullopt);
      } else {
        refuse_or_break(r, r.code == 0 || r.code / 100 == 3);
      }
      return;
    case State::data:
      if (r.code == 354) {
        state_ = State::body;
        step(std::nullopt);
      } else {
        refuse_or_break(r, r.code == 0 || ok2 || r.code / 100 == 3);
      }
      return;
    case State::message: {
      // Whatever the answer, the upstream transaction is over.
      std::optional<std::string> reply;
      if (!ok2) reply = r.code ? refusal_reply(r) : failure_reply(r);
      end();
      step(reply);
      return;
    }
    case State::open:
    case State::body:
      if (r.code == 0) state_ = State::broken;  // dropped while idle
      return;
    case State::idle:
    case State::broken:
      return;
  }
}

}  // namespace relay
}  // namespace smtpd
