// PureProxy: each client transaction is passed to the remote host as it
// arrives, through a relay::Transaction per channel (relay_client.h).
// MailmanProxy's own hooks are in mailman.cc.
#include "smtpd/proxy.h"

#include <algorithm>

#include "address.h"
#include "pytext.h"
#include "relay_client.h"

namespace smtpd {

PureProxy::PureProxy(const HostPort& localaddr, const HostPort& remoteaddr,
                     const ServerOptions& options, asyncore::socket_map* map)
    : SMTPServer(localaddr, remoteaddr, options, map) {}

// Each upstream session still open is ended here (QUIT, or a drop inside
// DATA); the channels themselves are cut loose by ~SMTPServer.
PureProxy::~PureProxy() { transactions_.clear(); }

relay::Transaction& PureProxy::transaction(SMTPChannel& ch) {
  std::unique_ptr<relay::Transaction>& t = transactions_[&ch];
  if (!t) t.reset(new relay::Transaction(*this, ch));
  return *t;
}

std::string PureProxy::client_param(const SMTPChannel& ch,
                                    const std::string& name) {
  std::string prefix = name + "=";
  for (const std::string& w : ch.pending_mail_options())
    if (w.compare(0, prefix.size(), prefix) == 0) return w.substr(prefix.size());
  return std::string();
}

Verdict PureProxy::on_mail(SMTPChannel& ch, const std::string& address) {
  if (!relay::safe_path(address))
    return Verdict::say("501 5.1.7 Bad sender address syntax");
  relay::Transaction& t = transaction(ch);
  t.mailfrom = address;
  t.size = client_param(ch, "SIZE");
  t.body = client_param(ch, "BODY");
  return t.answer([&t](relay::Transaction::Done done) { t.open(done); });
}

Verdict PureProxy::on_rcpt(SMTPChannel& ch, const std::string& address) {
  if (!relay::safe_path(address))
    return Verdict::say("501 5.1.3 Bad recipient address syntax");
  relay::Transaction& t = transaction(ch);
  return t.answer(
      [&](relay::Transaction::Done done) { t.rcpt(address, done); });
}

Verdict PureProxy::on_data(SMTPChannel& ch) {
  relay::Transaction& t = transaction(ch);
  return t.answer([&t](relay::Transaction::Done done) { t.data(done); });
}

Verdict PureProxy::on_message(SMTPChannel& ch) {
  relay::Transaction& t = transaction(ch);
  std::string wire = wire_format(add_x_peer(ch.received_data, ch.peer.host));
  return t.answer([&](relay::Transaction::Done done) {
    t.message(std::move(wire), done);
  });
}

void PureProxy::on_reset(SMTPChannel& ch) {
  auto it = transactions_.find(&ch);
  if (it == transactions_.end()) return;
  it->second->reset();
}

void PureProxy::on_channel_closed(SMTPChannel& ch) { transactions_.erase(&ch); }

std::string PureProxy::add_x_peer(const std::string& data,
                                  const std::string& host) {
  const std::string header = "X-Peer: " + host;
  // An empty line is an LF followed by LF or by the end; the first line is
  // empty when the text is empty or starts with LF.
  if (data.empty() || data[0] == '\n') return header + "\n" + data;
  for (size_t i = data.find('\n'); i != std::string::npos;
       i = data.find('\n', i + 1)) {
    if (i + 1 == data.size() || data[i + 1] == '\n')
      return data.substr(0, i + 1) + header + "\n" + data.substr(i + 1);
  }
  return data + "\n" + header;
}

std::string PureProxy::wire_format(const std::string& text) {
  std::string out;
  out.reserve(text.size() + text.size() / 16 + 8);
  bool line_start = true;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out += "\r\n";
      line_start = true;
      continue;
    }
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = false;
  }
  // The text's lines are joined by LF, so its last line (even an empty
  // one) still needs its CRLF.
  out += "\r\n";
  out += ".\r\n";
  return out;
}

}  // namespace smtpd
