// PureProxy and MailmanProxy.
// TODO: the relay is not written yet; until it is, MAIL is refused with a
// 451 so that no client is ever told 250 for mail that goes nowhere.
#include "smtpd/proxy.h"

namespace smtpd {

PureProxy::PureProxy(const HostPort& localaddr, const HostPort& remoteaddr,
                     const ServerOptions& options, asyncore::socket_map* map)
    : SMTPServer(localaddr, remoteaddr, options, map) {}

Verdict PureProxy::on_mail(SMTPChannel&, const std::string&) {
  return Verdict::say("451 4.3.0 Error: relaying is not available yet");
}

MailmanProxy::MailmanProxy(const HostPort& localaddr,
                           const HostPort& remoteaddr,
                           const ServerOptions& options,
                           asyncore::socket_map* map)
    : PureProxy(localaddr, remoteaddr, options, map) {}

}  // namespace smtpd
