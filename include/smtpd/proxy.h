// Public header. The relaying server classes: PureProxy (relays every
// message to the remote host) and MailmanProxy (hands list mail to
// Mailman 2, relays the rest).
//
// Unlike the reference, which relayed a whole message after answering
// 250, the envelope is passed upstream as it arrives: MAIL opens the
// upstream session, each RCPT is passed on before the client is answered,
// then DATA and the message. The client hears "250 OK" only for what the
// upstream accepted, the upstream's reply where it refused, and a 4xx
// when it could not be reached, timed out or went away.
#ifndef SMTPD_PROXY_H
#define SMTPD_PROXY_H

#include <memory>
#include <string>
#include <unordered_map>

#include "smtpd/smtpd.h"

namespace smtpd {

namespace relay {
class Transaction;
}

class PureProxy : public SMTPServer {
 public:
  PureProxy(const HostPort& localaddr, const HostPort& remoteaddr,
            const ServerOptions& options = ServerOptions(),
            asyncore::socket_map* map = nullptr);
  ~PureProxy() override;

  Verdict on_mail(SMTPChannel& ch, const std::string& address) override;
  Verdict on_rcpt(SMTPChannel& ch, const std::string& address) override;
  Verdict on_data(SMTPChannel& ch) override;
  Verdict on_message(SMTPChannel& ch) override;
  void on_reset(SMTPChannel& ch) override;
  void on_channel_closed(SMTPChannel& ch) override;


  /// `data` (lines joined by LF, as the channel collects them) with
  /// "X-Peer: host" inserted where the reference puts it: before the first
  /// empty line, or after the last line when there is none.
  static std::string add_x_peer(const std::string& data,
                                const std::string& host);
  /// `text` in SMTP wire form, as smtplib sends it: every CR, LF or CRLF
  /// becomes CRLF, a leading dot is doubled, and CRLF "." CRLF ends it.
  static std::string wire_format(const std::string& text);

 protected:
  /// The relay state of `ch`, made on first use; it lives until the
  /// channel closes or this server goes away.
  relay::Transaction& transaction(SMTPChannel& ch);
  /// The value of the MAIL command's parameter `name` ("SIZE", "BODY"),
  /// upper-cased, while on_mail() answers that command ("" if none).
  static std::string client_param(const SMTPChannel& ch,
                                  const std::string& name);

 private:
  std::unordered_map<SMTPChannel*, std::unique_ptr<relay::Transaction>>
      transactions_;
};

/// PureProxy that delivers to Mailman 2 lists itself: a recipient LIST,
/// LIST-admin, -owner, -request, -join or -leave, where LIST is a list
/// directory under ServerOptions::mailman_lists, gets 250 at RCPT and the
/// message is piped to "mailman_wrapper COMMAND LIST" after the final dot.
/// Other recipients are relayed; the upstream session opens at the first
/// of them, so list-only mail never needs the upstream.
class MailmanProxy : public PureProxy {
 public:
  MailmanProxy(const HostPort& localaddr, const HostPort& remoteaddr,
               const ServerOptions& options = ServerOptions(),
               asyncore::socket_map* map = nullptr);

  Verdict on_mail(SMTPChannel& ch, const std::string& address) override;
  Verdict on_rcpt(SMTPChannel& ch, const std::string& address) override;
  Verdict on_data(SMTPChannel& ch) override;
  Verdict on_message(SMTPChannel& ch) override;
};

}  // namespace smtpd

#endif
