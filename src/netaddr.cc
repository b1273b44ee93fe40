// Name resolution for the listening and relay addresses.
#include "netaddr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


namespace smtpd {
namespace netaddr {
namespace {

bool numeric(const std::string& host, int port, Address* out) {
  memset(out, 0, sizeof *out);
  sockaddr_in* in4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    return true;
  }
  sockaddr_in6* in6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void add_numeric(std::vector<Address>* out, const std::string& host, int port) {
  Address a;
  if (numeric(host, port, &a)) out->push_back(a);
}

}  // namespace

std::vector<std::string> hosts_lookup(const std::string& path,
                                      const std::string& name,
                                      std::string* canonical) {
  std::vector<std::string> addrs;
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return addrs;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    if (char* hash = strchr(line, '#')) *hash = '\0';
    std::vector<std::string> words;
    char* save = nullptr;
    for (char* w = strtok_r(line, " \t\r\n", &save); w;
         w = strtok_r(nullptr, " \t\r\n", &save))
      words.push_back(w);
    if (words.size() < 2) continue;
    bool match = false;
    for (size_t i = 1; i < words.size(); ++i)
      if (strcasecmp(words[i].c_str(), name.c_str()) == 0) match = true;
    if (!match) continue;
    addrs.push_back(words[0]);
    if (canonical && canonical->empty())
      for (size_t i = 1; i < words.size(); ++i)
        if (words[i].find('.') != std::string::npos) {
          *canonical = words[i];
          break;
        }
  }
  fclose(f);
  return addrs;
}

std::vector<Address> resolve(const std::string& host, int port, bool passive,
                             std::string* error) {
  std::vector<Address> out;
  if (host.empty() && passive) {
    add_numeric(&out, "0.0.0.0", port);
    return out;
  }
  add_numeric(&out, host, port);
  if (!out.empty()) return out;
  if (strcasecmp(host.c_str(), "localhost") == 0) {
    add_numeric(&out, "127.0.0.1", port);
    return out;
  }
#ifdef SMTPD_STATIC
  for (const std::string& a : hosts_lookup("/etc/hosts", host, nullptr))
    add_numeric(&out, a, port);
  if (out.empty() && error)
    *error = "cannot resolve \"" + host + "\" (this static build reads only "
             "/etc/hosts; give a numeric address)";
#else
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    if (error) *error = "cannot resolve \"" + host + "\": " + gai_strerror(rc);
    return out;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    memset(&a, 0, sizeof a);
    memcpy(&a.ss, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    out.push_back(a);
  }
  freeaddrinfo(res);
#endif
  return out;
}

// As Python's socket.getfqdn(): the host name's address, then that
// address's names (primary first, then aliases); the first with a dot,
// else the primary name; the plain host name if any step fails.
std::string getfqdn() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  std::string name = buf;
  std::vector<std::string> names;
#ifdef SMTPD_STATIC
  std::vector<std::string> addrs = hosts_lookup("/etc/hosts", name, nullptr);
  if (!addrs.empty()) names = hosts_names_for_address("/etc/hosts", addrs[0]);
#else
  std::string err;
  std::vector<Address> addrs = resolve(name, 0, false, &err);
  if (!addrs.empty()) {
    const void* raw;
    socklen_t rawlen;
    if (addrs[0].family() == AF_INET) {
      raw = &reinterpret_cast<const sockaddr_in*>(addrs[0].sa())->sin_addr;
      rawlen = sizeof(in_addr);
    } else {
      raw = &reinterpret_cast<const sockaddr_in6*>(addrs[0].sa())->sin6_addr;
      rawlen = sizeof(in6_addr);
    }
    if (hostent* he = gethostbyaddr(raw, rawlen, addrs[0].family())) {
      names.push_back(he->h_name);
      for (char** a = he->h_aliases; a && *a; ++a) names.push_back(*a);
    }
  }
#endif
  if (names.empty()) return name;
  for (const std::string& n : names)
    if (n.find('.') != std::string::npos) return n;
  return names[0];
}

std::vector<std::string> hosts_names_for_address(const std::string& path,
                                                 const std::string& address) {
  std::vector<std::string> names;
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return names;
  char line[1024];
  while (names.empty() && fgets(line, sizeof line, f)) {
    if (char* hash = strchr(line, '#')) *hash = '\0';
    char* save = nullptr;
    char* first = strtok_r(line, " \t\r\n", &save);
    if (!first || address != first) continue;
    for (char* w = strtok_r(nullptr, " \t\r\n", &save); w;
         w = strtok_r(nullptr, " \t\r\n", &save))
      names.push_back(w);
  }
  fclose(f);
  return names;
}

}  // namespace netaddr
}  // namespace smtpd
