// The epoll backend (Linux). Level-triggered, so it behaves like poll():
// a descriptor stays ready until its handler drains it.
#include "config.h"

#ifdef SMTPD_HAVE_EPOLL
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <system_error>

#include "poller/poller.h"

namespace smtpd {
namespace poller {
namespace {

class EpollPoller final : public Poller {
 public:
  EpollPoller() : epfd_(::epoll_create1(EPOLL_CLOEXEC)), events_(256) {
    if (epfd_ < 0)
      throw std::system_error(errno, std::generic_category(), "epoll_create1");
  }
  ~EpollPoller() override { ::close(epfd_); }

  const char* name() const override { return "epoll"; }

  int set(int fd, unsigned mask) override {
    if (fd < 0) {
      errno = EBADF;
      return -1;
    }
    if (static_cast<size_t>(fd) >= registered_.size())
      registered_.resize(static_cast<size_t>(fd) + 1, 0);
    epoll_event ev{};
    ev.events = ((mask & kRead) ? EPOLLIN : 0u) | ((mask & kWrite) ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    // registered_ holds mask + 1 so that 0 means "not in the epoll set".
    int op = registered_[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(epfd_, op, fd, &ev) < 0) return -1;
    registered_[fd] = static_cast<unsigned char>(mask + 1);
    return 0;
  }

  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= registered_.size() ||
        !registered_[fd])
      return;
    registered_[fd] = 0;
    epoll_event ev{};
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);  // a failed DEL changes nothing
  }

  int wait(int timeout_ms, std::vector<PollEvent>& out) override {
    int n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()),
                         timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events_[i];
      bool err = (e.events & (EPOLLERR | EPOLLHUP)) != 0;
      out.push_back({e.data.fd, (e.events & EPOLLIN) != 0,
                     (e.events & EPOLLOUT) != 0, err});
    }
    if (n == static_cast<int>(events_.size()) && events_.size() < 65536)
      events_.resize(events_.size() * 2);
    return n;
  }

 private:
  int epfd_;
  std::vector<epoll_event> events_;
  std::vector<unsigned char> registered_;
};

}  // namespace

std::unique_ptr<Poller> make_epoll_poller() {
  return std::unique_ptr<Poller>(new EpollPoller());
}

}  // namespace poller
}  // namespace smtpd
#endif
