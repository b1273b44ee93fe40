// Public header. The relaying server classes: PureProxy (relays every
// message to the remote host) and MailmanProxy (hands list mail to
// Mailman 2, relays the rest).
#ifndef SMTPD_PROXY_H
#define SMTPD_PROXY_H

#include "smtpd/smtpd.h"

namespace smtpd {

class PureProxy : public SMTPServer {
 public:
  PureProxy(const HostPort& localaddr, const HostPort& remoteaddr,
            const ServerOptions& options = ServerOptions(),
            asyncore::socket_map* map = nullptr);

  Verdict on_mail(SMTPChannel& ch, const std::string& address) override;
};

class MailmanProxy : public PureProxy {
 public:
  MailmanProxy(const HostPort& localaddr, const HostPort& remoteaddr,
               const ServerOptions& options = ServerOptions(),
               asyncore::socket_map* map = nullptr);
};

}  // namespace smtpd

#endif
