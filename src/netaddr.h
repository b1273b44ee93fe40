// Internal header. Host names to socket addresses, and this host's name.
// The dynamic build asks the resolver (getaddrinfo); the static build
// (SMTPD_STATIC) must not load NSS modules, so it reads /etc/hosts itself.
#ifndef SMTPD_NETADDR_H
#define SMTPD_NETADDR_H

#include <sys/socket.h>

#include <string>
#include <vector>

namespace smtpd {
namespace netaddr {

struct Address {
  sockaddr_storage ss;
  socklen_t len;
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

/// Addresses for `host` and `port`: a numeric IPv4 or IPv6 address,
/// "localhost", "" (every interface, when `passive`), or a name. Empty
/// result: *error says why.
std::vector<Address> resolve(const std::string& host, int port, bool passive,
                             std::string* error);

/// This host's fully qualified name, as Python's socket.getfqdn() finds it.
std::string getfqdn();

/// Reads /etc/hosts-format text for `name`: the addresses, and (through
/// `canonical`) the first dotted name on a line that mentions it.
std::vector<std::string> hosts_lookup(const std::string& path,
                                      const std::string& name,
                                      std::string* canonical);

/// The names on the first /etc/hosts-format line for `address`.
std::vector<std::string> hosts_names_for_address(const std::string& path,
                                                 const std::string& address);

}  // namespace netaddr
}  // namespace smtpd

#endif
