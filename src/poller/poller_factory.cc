// Chooses a backend: the named one, or the best this build has.
#include "config.h"
#include "poller/poller.h"

namespace smtpd {
namespace poller {

std::vector<std::string> available_pollers() {
  std::vector<std::string> names;
#ifdef SMTPD_HAVE_EPOLL
  names.push_back("epoll");
#endif
#ifdef SMTPD_HAVE_KQUEUE
  names.push_back("kqueue");
#endif
  names.push_back("poll");
  names.push_back("select");
  return names;
}

std::unique_ptr<Poller> make_poller(const std::string& name,
                                    std::string* error) {
  std::string want = name.empty() ? available_pollers().front() : name;
#ifdef SMTPD_HAVE_EPOLL
  if (want == "epoll") return make_epoll_poller();
#endif
#ifdef SMTPD_HAVE_KQUEUE
  if (want == "kqueue") return make_kqueue_poller();
#endif
  if (want == "poll") return make_poll_poller();
  if (want == "select") return make_select_poller();
  if (error) {
    *error = "unknown poller \"" + want + "\" (this build has:";
    for (const std::string& n : available_pollers()) *error += " " + n;
    *error += ")";
  }
  return nullptr;
}

}  // namespace poller
}  // namespace smtpd
