// SMTPChannel: one RFC 5321 session, a translation of the reference's
// design (COMMAND and DATA states, one smtp_VERB method per command), with
// the fixes the reference lacks: an empty message ends at ".", a 552 ends
// the transaction, bad UTF-8 and bad addresses get replies, and the
// command-length limits belong to the connection.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>

#include <algorithm>
#include <map>

#include "address.h"
#include "config.h"
#include "pytext.h"
#include "smtpd/smtpd.h"

namespace smtpd {

const char* const __version__ = "smtpd C++ SMTP proxy version " SMTPD_VERSION;

namespace {

// Without -s (or with -s 0) a message still may not grow past this.
constexpr size_t kHardDataCap = size_t(1) << 31;

const char kSupported[] =
    "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY";
const char kStartData[] = "354 End data with <CR><LF>.<CR><LF>";

using Method = void (SMTPChannel::*)(const std::string*);

Method find_method(const std::string& command) {
  static const std::map<std::string, Method> table = {
      {"HELO", &SMTPChannel::smtp_HELO}, {"EHLO", &SMTPChannel::smtp_EHLO},
      {"NOOP", &SMTPChannel::smtp_NOOP}, {"QUIT", &SMTPChannel::smtp_QUIT},
      {"HELP", &SMTPChannel::smtp_HELP}, {"VRFY", &SMTPChannel::smtp_VRFY},
      {"MAIL", &SMTPChannel::smtp_MAIL}, {"RCPT", &SMTPChannel::smtp_RCPT},
      {"RSET", &SMTPChannel::smtp_RSET}, {"DATA", &SMTPChannel::smtp_DATA},
      {"EXPN", &SMTPChannel::smtp_EXPN},
  };
  auto it = table.find(command);
  return it == table.end() ? nullptr : it->second;
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return out;
}

// The reference's _strip_command_keyword: "FROM:" / "TO:", any case.
std::string strip_keyword(std::string_view keyword, const std::string& arg) {
  if (arg.size() >= keyword.size() &&
      ascii_upper(std::string_view(arg).substr(0, keyword.size())) == keyword)
    return std::string(pytext::strip(std::string_view(arg).substr(keyword.size())));
  return std::string();
}

// The reference's _getparams: NAME or NAME=VALUE with an alphanumeric
// NAME and a non-empty VALUE; later duplicates win, as in a dict.
struct Param {
  std::string name;
  std::optional<std::string> value;  // none: given without "="
};

bool get_params(const std::vector<std::string>& words, std::vector<Param>* out) {
  for (const std::string& w : words) {
    size_t eq = w.find('=');
    Param p;
    p.name = w.substr(0, eq);
    if (eq != std::string::npos) p.value = w.substr(eq + 1);
    if (!pytext::isalnum(p.name) || (p.value && p.value->empty())) return false;
    auto same = [&](const Param& q) { return q.name == p.name; };
    out->erase(std::remove_if(out->begin(), out->end(), same), out->end());
    out->push_back(std::move(p));
  }
  return true;
}

std::optional<Param> pop_param(std::vector<Param>* params, const char* name) {
  for (auto it = params->begin(); it != params->end(); ++it) {
    if (it->name == name) {
      Param p = std::move(*it);
      params->erase(it);
      return p;
    }
  }
  return std::nullopt;
}

// Compares two decimal strings by value.
bool decimal_greater(std::string_view a, size_t b) {
  while (a.size() > 1 && a[0] == '0') a.remove_prefix(1);
  std::string bs = std::to_string(b);
  if (a.size() != bs.size()) return a.size() > bs.size();
  return a > std::string_view(bs);
}

bool accepted(const std::optional<std::string>& reply) {
  return !reply || reply->empty() || (*reply)[0] == '2' || (*reply)[0] == '3';
}

}  // namespace

// ------------------------------------------------------------------ setup

SMTPChannel::SMTPChannel(SMTPServer& server, int fd,
                         const sockaddr_storage& addr, socklen_t addrlen,
                         asyncore::socket_map* map)
    : async_chat(fd, map),
      smtp_server(server),
      data_size_limit(server.data_size_limit),
      enable_SMTPUTF8(server.enable_SMTPUTF8) {
  const sockaddr* sa = reinterpret_cast<const sockaddr*>(&addr);
  peer.host = asyncore::format_host(sa, addrlen);
  peer.port = std::max(0, asyncore::address_port(sa));
  fqdn = server.fqdn();
  int one = 1;
  setsockopt(fileno(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  server.link(this);
  set_rset_state();
  if (debugging())
    debug("Peer: ('" + peer.host + "', " + std::to_string(peer.port) + ")");
  push("220 " + fqdn + " " + __version__);
  arm_timeout();
}

SMTPChannel::~SMTPChannel() {
  drop_data();
  if (!orphaned_) {
    smtp_server.on_channel_closed(*this);
    smtp_server.unlink(this);
  }
}

std::string SMTPChannel::describe() const {
  return "session with " + peer.host + ":" + std::to_string(peer.port);
}

void SMTPChannel::set_post_data_state() {
  smtp_state = COMMAND;
  mailfrom.reset();
  rcpttos.clear();
  require_SMTPUTF8 = false;
  num_bytes = 0;
  data_overflow_ = false;
  storage_full_ = false;
  set_terminator("\r\n");
}

void SMTPChannel::set_rset_state() {
  set_post_data_state();
  drop_data();
  line_.clear();
}

void SMTPChannel::arm_timeout() {
  const ServerOptions& o = smtp_server.options();
  double t = smtp_state == DATA ? o.data_timeout : o.timeout;
  set_timeout(t > 0 ? t : -1);
}

void SMTPChannel::handle_timeout() {
  if (awaiting()) {  // the hook owns the clock (the relay has its own)
    arm_timeout();
    return;
  }
  if (timed_out_) {  // the 421 itself could not be delivered: give up
    close();
    return;
  }
  if (debugging()) debug("Timeout: " + describe());
  timed_out_ = true;
  push("421 " + fqdn + " Error: timeout exceeded");
  close_when_done();
  arm_timeout();  // a client that never reads does not keep us open
}

void SMTPChannel::handle_close() {
  if (debugging()) debug("Closed: " + describe());
  async_chat::handle_close();
}

void SMTPChannel::push(std::string_view msg) {
  std::string line;
  line.reserve(msg.size() + 2);
  line.append(msg.data(), msg.size());
  // Replies are ASCII unless the transaction asked for SMTPUTF8; the
  // reference would raise here, so stray bytes are shown as '?'.
  for (char& c : line) {
    if ((static_cast<unsigned char>(c) >= 0x80 && !require_SMTPUTF8) ||
        c == '\r' || c == '\n')
      c = '?';
  }
  line.append("\r\n", 2);
  async_chat::push(line);
}

size_t SMTPChannel::command_limit(std::string_view command) const {
  if (extended_smtp && command == "MAIL")
    return command_size_limit + mail_limit_extra_;
  return command_size_limit;
}

size_t SMTPChannel::max_command_size_limit() const {
  return command_size_limit + mail_limit_extra_;
}

// ------------------------------------------------------------------ input

void SMTPChannel::collect_incoming_data(const char* data, size_t len) {
  if (smtp_state == COMMAND) {
    size_t limit = max_command_size_limit();
    if (num_bytes > limit) return;  // over the limit: count no further
    num_bytes += len;
    size_t room = limit + 1 > line_.size() ? limit + 1 - line_.size() : 0;
    line_.append(data, std::min(len, room));
    return;
  }
  // DATA: store the line un-dot-stuffed, LF-joined, until over the limit.
  if (cur_line_bytes_ == 0 && len > 0 && data[0] == '.') {
    line_dot_ = true;
    ++data;
    --len;
    ++cur_line_bytes_;
  }
  cur_line_bytes_ += len;
  size_t limit = data_size_limit ? data_size_limit : kHardDataCap;
  size_t size_now = num_bytes + (data_lines_ ? 2 : 0) + cur_line_bytes_;
  if (!data_overflow_ && cur_line_bytes_ >= 2 && size_now > limit) {
    data_overflow_ = true;
    drop_data();
  }
  if (data_overflow_ || len == 0) return;
  bool sep = !sep_written_ && data_lines_;
  if (!charge(len + (sep ? 1 : 0))) return;
  if (sep) received_data.push_back('\n');
  sep_written_ = true;
  received_data.append(data, len);
}

// Every session's message text counts against one budget for the server
// (--max-buffered): many large messages at once get 452, not the memory.
bool SMTPChannel::charge(size_t n) {
  size_t cap = smtp_server.options().max_buffered;
  if (cap && smtp_server.buffered_bytes + n > cap) {
    storage_full_ = true;
    data_overflow_ = true;
    drop_data();
    return false;
  }
  smtp_server.buffered_bytes += n;
  charged_ += n;
  return true;
}

void SMTPChannel::drop_data() {
  std::string().swap(received_data);
  if (!orphaned_) smtp_server.buffered_bytes -= charged_;
  charged_ = 0;
}

// The command timer restarts with each command. The DATA timer runs from
// the last read (RFC 5321 4.5.3.2.6), so handle_read() re-arms it once per
// read: a line may span reads, and a clock read per line costs on big mail.
void SMTPChannel::found_terminator() {
  if (smtp_state == COMMAND) {
    arm_timeout();
    process_command_line();
  } else {
    process_data_line();
  }
}

void SMTPChannel::handle_read() {
  async_chat::handle_read();
  if (smtp_state == DATA && fileno() >= 0) arm_timeout();
}

void SMTPChannel::process_data_line() {
  if (cur_line_bytes_ == 1 && line_dot_) {
    cur_line_bytes_ = 0;
    line_dot_ = false;
    finish_message();
    return;
  }
  if (!data_overflow_ && !sep_written_ && data_lines_ && charge(1))
    received_data.push_back('\n');
  num_bytes += (data_lines_ ? 2 : 0) + cur_line_bytes_;
  ++data_lines_;
  cur_line_bytes_ = 0;
  line_dot_ = false;
  sep_written_ = false;
  size_t limit = data_size_limit ? data_size_limit : kHardDataCap;
  if (!data_overflow_ && num_bytes > limit) {
    data_overflow_ = true;
    drop_data();
  }
}

void SMTPChannel::finish_message() {
  if (debugging())
    debug("Data: " + std::to_string(num_bytes) + " bytes from " + describe());
  size_t limit = data_size_limit ? data_size_limit : kHardDataCap;
  if (data_overflow_ || num_bytes > limit) {
    // The reference stays in DATA here; we end the transaction.
    push(storage_full_ ? "452 Error: insufficient system storage; try later"
                       : "552 Error: Too much mail data");
    set_post_data_state();
    drop_data();
    smtp_server.on_reset(*this);
    arm_timeout();
    return;
  }
  apply_verdict(Pending::message, smtp_server.on_message(*this));
}

void SMTPChannel::process_command_line() {
  size_t sz = num_bytes;
  num_bytes = 0;
  std::string line;
  line.swap(line_);
  if (debugging()) debug("Data: " + pytext::bytes_repr(line));
  if (line.empty()) {
    push("500 Error: bad syntax");
    return;
  }
  size_t sp = line.find(' ');
  std::string raw_command = line.substr(0, sp);
  size_t max_sz = extended_smtp ? command_limit(ascii_upper(raw_command))
                                : command_size_limit;
  if (sz > max_sz) {
    push("500 Error: line too long");
    return;
  }
  if (!pytext::utf8_valid(line)) {
    // The reference drops the connection here.
    push("500 Error: bad syntax (command line is not valid UTF-8)");
    return;
  }
  std::string command = pytext::upper(raw_command);
  std::string arg;
  if (sp != std::string::npos)
    arg = std::string(pytext::strip(std::string_view(line).substr(sp + 1)));
  Method method = find_method(command);
  if (!method) {
    push("500 Error: command \"" + command + "\" not recognized");
    return;
  }
  (this->*method)(sp == std::string::npos ? nullptr : &arg);
}

// ------------------------------------------------------------------ verdicts

void SMTPChannel::apply_verdict(Pending stage, const Verdict& v) {
  if (v.pending) {
    pending_ = stage;
    pause_input();
    return;
  }
  accept_stage(stage, v.reply);
}

void SMTPChannel::complete(std::optional<std::string> reply) {
  Pending stage = pending_;
  if (stage == Pending::none) return;
  pending_ = Pending::none;
  resume_input();
  accept_stage(stage, reply);
}

void SMTPChannel::accept_stage(Pending stage,
                               const std::optional<std::string>& reply) {
  bool ok = accepted(reply);
  switch (stage) {
    case Pending::mail:
      if (ok) {
        mailfrom = pending_address_;
        mail_options = pending_options_;
        require_SMTPUTF8 = pending_utf8_;
        if (debugging()) debug("sender: " + *mailfrom);
      }
      push(ok && (!reply || reply->empty()) ? std::string("250 OK") : *reply);
      break;
    case Pending::rcpt:
      if (ok) {
        rcpttos.push_back(pending_address_);
        if (debugging()) debug("recips: " + pytext::list_repr(rcpttos));
      }
      push(ok && (!reply || reply->empty()) ? std::string("250 OK") : *reply);
      break;
    case Pending::data:
      if (ok) {
        smtp_state = DATA;
        num_bytes = 0;
        data_lines_ = 0;
        cur_line_bytes_ = 0;
        line_dot_ = sep_written_ = false;
        data_overflow_ = false;
        drop_data();
        arm_timeout();
      }
      push(ok && (!reply || reply->empty()) ? std::string(kStartData) : *reply);
      break;
    case Pending::message:
      set_post_data_state();
      drop_data();
      push(!reply || reply->empty() ? std::string("250 OK") : *reply);
      arm_timeout();
      if (quit_after_transaction_) shutdown_gracefully();
      break;
    case Pending::none:
      break;
  }
}

void SMTPChannel::shutdown_gracefully() {
  quit_after_transaction_ = true;
  if (in_transaction() || smtp_state == DATA) return;
  push("421 " + fqdn + " Service shutting down");
  close_when_done();
}

// ------------------------------------------------------------------ commands

// What HELO and EHLO share: the syntax and duplicate checks, then a reset.
bool SMTPChannel::greet(const std::string* arg, const char* verb) {
  if (!arg || arg->empty()) {
    push(std::string("501 Syntax: ") + verb + " hostname");
    return false;
  }
  if (!seen_greeting.empty()) {
    push("503 Duplicate HELO/EHLO");
    return false;
  }
  set_rset_state();
  smtp_server.on_reset(*this);
  seen_greeting = *arg;
  return true;
}

void SMTPChannel::smtp_HELO(const std::string* arg) {
  if (greet(arg, "HELO")) push("250 " + fqdn);
}

void SMTPChannel::smtp_EHLO(const std::string* arg) {
  if (!greet(arg, "EHLO")) return;
  extended_smtp = true;
  push("250-" + fqdn);
  if (data_size_limit) {
    push("250-SIZE " + std::to_string(data_size_limit));
    mail_limit_extra_ += 26;
  }
  push("250-8BITMIME");
  if (enable_SMTPUTF8) {
    push("250-SMTPUTF8");
    mail_limit_extra_ += 10;
  }
  push("250 HELP");
}

void SMTPChannel::smtp_NOOP(const std::string* arg) {
  push(arg && !arg->empty() ? "501 Syntax: NOOP" : "250 OK");
}

void SMTPChannel::smtp_QUIT(const std::string*) {
  push("221 Bye");
  close_when_done();
}

void SMTPChannel::smtp_HELP(const std::string* arg) {
  if (!arg || arg->empty()) {
    push(std::string("250 ") + kSupported);
    return;
  }
  const std::string topic = pytext::upper(*arg);
  const char* extended = extended_smtp ? " [SP <mail-parameters>]" : "";
  if (topic == "EHLO") push("250 Syntax: EHLO hostname");
  else if (topic == "HELO") push("250 Syntax: HELO hostname");
  else if (topic == "MAIL") push(std::string("250 Syntax: MAIL FROM: <address>") + extended);
  else if (topic == "RCPT") push(std::string("250 Syntax: RCPT TO: <address>") + extended);
  else if (topic == "DATA") push("250 Syntax: DATA");
  else if (topic == "RSET") push("250 Syntax: RSET");
  else if (topic == "NOOP") push("250 Syntax: NOOP");
  else if (topic == "QUIT") push("250 Syntax: QUIT");
  else if (topic == "VRFY") push("250 Syntax: VRFY <address>");
  else push(std::string("501 ") + kSupported);
}

void SMTPChannel::smtp_VRFY(const std::string* arg) {
  if (!arg || arg->empty()) {
    push("501 Syntax: VRFY <address>");
    return;
  }
  ParsedPath p = parse_path(*arg);
  if (!p.error && !p.address.empty())
    push("252 Cannot VRFY user, but will accept message and attempt delivery");
  else
    push("502 Could not VRFY " + *arg);
}

void SMTPChannel::smtp_MAIL(const std::string* arg) {
  if (seen_greeting.empty()) {
    push("503 Error: send HELO first");
    return;
  }
  if (debugging()) debug("===> MAIL " + (arg ? *arg : std::string("None")));
  std::string syntaxerr = "501 Syntax: MAIL FROM: <address>";
  if (extended_smtp) syntaxerr += " [SP <mail-parameters>]";
  if (!arg) {
    push(syntaxerr);
    return;
  }
  ParsedPath p = parse_path(strip_keyword("FROM:", *arg));
  if (p.error || p.address.empty() || (!extended_smtp && !p.rest.empty())) {
    push(syntaxerr);
    return;
  }
  if (mailfrom) {
    push("503 Error: nested MAIL command");
    return;
  }
  std::vector<std::string> options = pytext::split(pytext::upper(p.rest));
  std::vector<Param> params;
  if (!get_params(options, &params)) {
    push(syntaxerr);
    return;
  }
  std::optional<Param> body = pop_param(&params, "BODY");
  if (body && (!body->value || (*body->value != "7BIT" &&
                                *body->value != "8BITMIME"))) {
    push("501 Error: BODY can only be one of 7BIT, 8BITMIME");
    return;
  }
  bool utf8 = false;
  if (enable_SMTPUTF8) {
    std::optional<Param> u = pop_param(&params, "SMTPUTF8");
    if (u && u->value) {
      push("501 Error: SMTPUTF8 takes no arguments");
      return;
    }
    utf8 = u.has_value();
  }
  std::optional<Param> size = pop_param(&params, "SIZE");
  if (size) {
    // SIZE without a value crashes the reference; it is a syntax error.
    if (!size->value || !pytext::isdigits(*size->value)) {
      push(syntaxerr);
      return;
    }
    if (data_size_limit && decimal_greater(*size->value, data_size_limit)) {
      push("552 Error: message size exceeds fixed maximum message size");
      return;
    }
  }
  if (!params.empty()) {
    push("555 MAIL FROM parameters not recognized or not implemented");
    return;
  }
  pending_address_ = p.address;
  pending_options_ = std::move(options);
  pending_utf8_ = utf8;
  apply_verdict(Pending::mail, smtp_server.on_mail(*this, p.address));
}

void SMTPChannel::smtp_RCPT(const std::string* arg) {
  if (seen_greeting.empty()) {
    push("503 Error: send HELO first");
    return;
  }
  if (debugging()) debug("===> RCPT " + (arg ? *arg : std::string("None")));
  if (!mailfrom) {
    push("503 Error: need MAIL command");
    return;
  }
  std::string syntaxerr = "501 Syntax: RCPT TO: <address>";
  if (extended_smtp) syntaxerr += " [SP <mail-parameters>]";
  if (!arg) {
    push(syntaxerr);
    return;
  }
  ParsedPath p = parse_path(strip_keyword("TO:", *arg));
  if (p.error || p.address.empty() || (!extended_smtp && !p.rest.empty())) {
    push(syntaxerr);
    return;
  }
  rcpt_options = pytext::split(pytext::upper(p.rest));
  std::vector<Param> params;
  if (!get_params(rcpt_options, &params)) {
    push(syntaxerr);
    return;
  }
  if (!params.empty()) {
    push("555 RCPT TO parameters not recognized or not implemented");
    return;
  }
  size_t max = smtp_server.options().max_recipients;
  if (max && rcpttos.size() >= max) {
    push("452 4.5.3 Error: too many recipients");
    return;
  }
  pending_address_ = p.address;
  apply_verdict(Pending::rcpt, smtp_server.on_rcpt(*this, p.address));
}

void SMTPChannel::smtp_RSET(const std::string* arg) {
  if (arg && !arg->empty()) {
    push("501 Syntax: RSET");
    return;
  }
  set_rset_state();
  smtp_server.on_reset(*this);
  push("250 OK");
  if (quit_after_transaction_) shutdown_gracefully();
}

void SMTPChannel::smtp_DATA(const std::string* arg) {
  if (seen_greeting.empty()) {
    push("503 Error: send HELO first");
    return;
  }
  if (rcpttos.empty()) {
    push("503 Error: need RCPT command");
    return;
  }
  if (arg && !arg->empty()) {
    push("501 Syntax: DATA");
    return;
  }
  apply_verdict(Pending::data, smtp_server.on_data(*this));
}

void SMTPChannel::smtp_EXPN(const std::string*) {
  push("502 EXPN not implemented");
}

}  // namespace smtpd
